package vmm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/cgroups"
)

// Domain types.
const (
	// TypeQEMU is plain emulation (TCG), the default: this project's build
	// and test machines have a /dev/kvm that standard kernels fail on.
	TypeQEMU = "qemu"
	// TypeKVM is hardware virtualization, only when asked for.
	TypeKVM = "kvm"
)

// Machine is the QEMU machine type: i440fx boots a BIOS guest faster than
// q35 under TCG (fewer devices for SeaBIOS to set up, no AHCI).
const Machine = "pc"

// MetadataNS is the namespace of vmm's element in a domain's metadata; a
// domain that has it is vmm's to redefine and undefine.
const MetadataNS = "https://hardvisor.dev/xmlns/vmm/1"

// Metadata is vmm's element in a domain's <metadata>.
type Metadata struct {
	XMLName xml.Name `xml:"https://hardvisor.dev/xmlns/vmm/1 guest"`
	// Spec is the SHA-256 of the domain XML vmm made, without this
	// element: a domain whose Spec differs is redefined.
	Spec string `xml:"spec"`
}

// Guest is a configured guest as vmm runs it: its resolved spec and the
// bridge port its NIC becomes.
type Guest struct {
	Spec config.GuestSpec
	// Bridge is the guest network's bridge (hvbr0, …); VID is the
	// network's VLAN inside the bridge, the tap's PVID.
	Bridge string
	VID    int
}

// DomainOptions are the host settings a domain is made with.
type DomainOptions struct {
	// Type is TypeQEMU (default) or TypeKVM.
	Type string
	// DataDir holds the guests' directories; default config.DataDir.
	DataDir string
	// IODevice is the whole block device holding DataDir (/dev/vda), which
	// the I/O ceilings apply to; empty when DataDir is on no block device.
	IODevice string
}

// GuestDir is where guest name's disk and console log live.
func GuestDir(dataDir, name string) string { return filepath.Join(dataDir, "guests", name) }

// DiskPath is guest name's disk: a raw image.
func DiskPath(dataDir, name string) string { return filepath.Join(GuestDir(dataDir, name), "disk.img") }

// ConsolePath is guest name's console log: what it writes to its serial port.
func ConsolePath(dataDir, name string) string {
	return filepath.Join(GuestDir(dataDir, name), "console.log")
}

// uuidSpace is the name space of the guests' UUIDs.
var uuidSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte(MetadataNS))

// UUID is guest name's domain UUID, the same on every host and build.
func UUID(name string) string { return uuid.NewSHA1(uuidSpace, []byte(name)).String() }

// TapName is guest name's tap device: "hv-" and 8 hex digits of the name's
// hash (11 characters, within IFNAMSIZ, and outside libvirt's reserved
// "vnet" prefix). The nftables rules match on it.
func TapName(name string) string {
	h := sha256.Sum256([]byte("hardvisor tap " + name))
	return "hv-" + hex.EncodeToString(h[:4])
}

// Domain makes guest g's libvirt domain. The result carries vmm's Metadata
// with the hash of everything else.
func Domain(g Guest, o DomainOptions) (*libvirtxml.Domain, error) {
	s := g.Spec
	if o.Type == "" {
		o.Type = TypeQEMU
	}
	if o.Type != TypeQEMU && o.Type != TypeKVM {
		return nil, fmt.Errorf("guest %s: domain type %q: want %s or %s", s.Name, o.Type, TypeQEMU, TypeKVM)
	}
	if o.DataDir == "" {
		o.DataDir = config.DataDir
	}
	if s.CPUs < 1 || s.Memory < config.Mi {
		return nil, fmt.Errorf("guest %s: %d cpus and %s memory: want at least 1 and 1Mi", s.Name, s.CPUs, s.Memory)
	}
	l := s.Limits
	d := &libvirtxml.Domain{
		Type:   o.Type,
		Name:   s.Name,
		UUID:   UUID(s.Name),
		Memory: &libvirtxml.DomainMemory{Value: uint(kib(s.Memory)), Unit: "KiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(s.CPUs)},
		CPUTune: &libvirtxml.DomainCPUTune{
			// libvirt writes shares to cpu.weight unchanged on cgroup v2.
			Shares: &libvirtxml.DomainCPUTuneShares{Value: uint(max(l.CPUWeight, 1))},
		},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: Machine, Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		// Without ACPI the guest never sees the power button.
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{
					Path: ConsolePath(o.DataDir, s.Name), Append: "on"}},
				Target: &libvirtxml.DomainSerialTarget{Port: ptr(uint(0))},
			}},
			// The image carries no VGA ROMs.
			Videos:     []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "none"}}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if l.CPU > 0 {
		// global_quota is cpu.max of the domain's whole group (vCPUs,
		// emulator and I/O threads), where <quota> would apply per vCPU
		// and leave the group's total at the vCPU count times the quota.
		d.CPUTune.GlobalPeriod = &libvirtxml.DomainCPUTunePeriod{Value: cgroups.CPUPeriod}
		d.CPUTune.GlobalQuota = &libvirtxml.DomainCPUTuneQuota{Value: max(int64(l.CPU)*cgroups.CPUPeriod/100, cgroups.MinCPUQuota)}
	}
	if l.Memory > 0 {
		d.MemoryTune = &libvirtxml.DomainMemoryTune{HardLimit: &libvirtxml.DomainMemoryTuneLimit{Value: kib(l.Memory), Unit: "KiB"}}
	}
	if l.IOPS > 0 || l.Bandwidth > 0 {
		if o.IODevice == "" {
			return nil, fmt.Errorf("guest %s: limits.iops and limits.bandwidth need %s on a block device", s.Name, o.DataDir)
		}
		d.BlockIOTune = &libvirtxml.DomainBlockIOTune{Device: []libvirtxml.DomainBlockIOTuneDevice{{
			Path:          o.IODevice,
			ReadIopsSec:   uint(l.IOPS),
			WriteIopsSec:  uint(l.IOPS),
			ReadBytesSec:  uint(l.Bandwidth),
			WriteBytesSec: uint(l.Bandwidth),
		}}}
	}
	if hasDisk(s) {
		d.Devices.Disks = []libvirtxml.DomainDisk{{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: DiskPath(o.DataDir, s.Name)}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		}}
	}
	if g.Bridge != "" {
		d.Devices.Interfaces = []libvirtxml.DomainInterface{{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: strings.ToLower(s.MAC)},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: g.Bridge}},
			Target: &libvirtxml.DomainInterfaceTarget{Dev: TapName(s.Name)},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			// No option ROM: the guest boots from its disk, and the image
			// carries no iPXE ROMs.
			ROM: &libvirtxml.DomainROM{Enabled: "no"},
		}}
	}
	b, err := xml.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", s.Name, err)
	}
	h := sha256.Sum256(b)
	md, err := xml.Marshal(Metadata{Spec: hex.EncodeToString(h[:])})
	if err != nil {
		return nil, err
	}
	d.Metadata = &libvirtxml.DomainMetadata{XML: string(md)}
	return d, nil
}

// hasDisk says whether the guest has a disk: a size or an image.
func hasDisk(s config.GuestSpec) bool { return s.Disk > 0 || s.Image != "" }

// OwnMetadata finds vmm's element in a domain's metadata; nil when the
// domain is not vmm's.
func OwnMetadata(d *libvirtxml.Domain) *Metadata {
	if d.Metadata == nil || !strings.Contains(d.Metadata.XML, MetadataNS) {
		return nil
	}
	var wrap struct {
		Guests []Metadata `xml:"https://hardvisor.dev/xmlns/vmm/1 guest"`
	}
	if err := xml.Unmarshal([]byte("<m>"+d.Metadata.XML+"</m>"), &wrap); err != nil || len(wrap.Guests) == 0 {
		return nil
	}
	return &wrap.Guests[0]
}

// SELinuxLabel is the process label in a live domain's seclabel (its MCS
// categories tell guests apart); empty without SELinux.
func SELinuxLabel(d *libvirtxml.Domain) string {
	for _, s := range d.SecLabel {
		if s.Model == "selinux" && s.Label != "" {
			return s.Label
		}
	}
	return ""
}

// kib is a size in KiB, rounded up as libvirt rounds.
func kib(s config.Size) uint64 { return (uint64(s) + 1023) / 1024 }

func ptr[T any](v T) *T { return &v }
