package qemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Files Args places in Options.StateDir.
const (
	qmpSocketName = "qmp.sock"
	varsFileName  = "OVMF_VARS.fd"
	// maxSocketPath is sizeof(sockaddr_un.sun_path) minus the NUL.
	maxSocketPath = 107
)

// Args returns the full argv (argv[0] is the emulator) that Start runs for
// opts. It reads nothing but the environment variable HARDVISOR_KVM (when
// opts.Accel is empty), so tests can assert the exact command line. Every
// invalid field is reported, each error naming its field path.
func Args(opts Options) ([]string, error) {
	if err := validate(opts); err != nil {
		return nil, err
	}
	a := &argv{}
	a.add(value(opts.QEMU, DefaultBinary))
	a.add("-name", escape(value(opts.Name, DefaultName)))
	// No default devices, no host configuration files: the argv is the
	// whole machine.
	a.add("-nodefaults", "-no-user-config", "-display", "none")

	machine := value(opts.Machine, DefaultMachine)
	if opts.Firmware != nil && opts.Firmware.SMM {
		machine += ",smm=on"
	}
	a.add("-machine", machine)
	accel := accelerator(opts.Accel)
	a.add("-accel", accel)
	switch {
	case opts.CPU != "":
		a.add("-cpu", opts.CPU)
	case accel == "kvm":
		a.add("-cpu", "host")
	}
	a.add("-m", strconv.Itoa(positive(opts.Memory, DefaultMemory)))
	a.add("-smp", strconv.Itoa(positive(opts.CPUs, DefaultCPUs)))

	// The serial console is QEMU's stdin/stdout; signal=off keeps a ^C sent
	// by a test going to the guest instead of killing QEMU.
	a.add("-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console")
	a.add("-qmp", "unix:"+escape(filepath.Join(opts.StateDir, qmpSocketName))+",server=on,wait=off")
	if opts.NoReboot {
		a.add("-no-reboot")
	}

	if fw := opts.Firmware; fw != nil {
		if fw.SMM {
			a.add("-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		a.add("-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(value(fw.Code, OVMFCode)))
		a.add("-drive", "if=pflash,format=raw,unit=1,file="+escape(varsPath(opts.StateDir)))
	}
	if opts.Kernel != "" {
		a.add("-kernel", opts.Kernel)
		if opts.Initrd != "" {
			a.add("-initrd", opts.Initrd)
		}
		if opts.Append != "" {
			a.add("-append", opts.Append)
		}
	}

	usb := false
	for i, d := range opts.Disks {
		id := fmt.Sprintf("disk%d", i)
		iface := value(d.Interface, Virtio)
		drive := []string{
			"file=" + escape(d.Path),
			"format=" + value(d.Format, Raw),
			"if=none",
			"id=" + id,
		}
		if d.ReadOnly || iface == CDROM {
			drive = append(drive, "readonly=on")
		}
		if d.Snapshot {
			drive = append(drive, "snapshot=on")
		}
		if iface == CDROM {
			drive = append(drive, "media=cdrom")
		}
		a.add("-drive", strings.Join(drive, ","))

		var dev []string
		switch iface {
		case Virtio:
			dev = []string{"virtio-blk-pci", "drive=" + id}
		case USB:
			if !usb {
				a.add("-device", "qemu-xhci,id=xhci")
				usb = true
			}
			dev = []string{"usb-storage", "bus=xhci.0", "drive=" + id, "removable=on"}
		case IDE:
			dev = []string{"ide-hd", "drive=" + id}
		case CDROM:
			dev = []string{"ide-cd", "drive=" + id}
		}
		if d.BootIndex > 0 {
			dev = append(dev, "bootindex="+strconv.Itoa(d.BootIndex))
		}
		a.add("-device", strings.Join(dev, ","))
	}

	for i, n := range opts.NICs {
		id := fmt.Sprintf("net%d", i)
		var netdev []string
		if n.TAP != "" {
			// No scripts: the test set the device up; QEMU only opens it.
			netdev = []string{"tap", "id=" + id, "ifname=" + n.TAP, "script=no", "downscript=no"}
		} else {
			netdev = []string{"user", "id=" + id}
			if n.TFTP != "" {
				netdev = append(netdev, "tftp="+escape(n.TFTP))
			}
			if n.BootFile != "" {
				netdev = append(netdev, "bootfile="+escape(n.BootFile))
			}
			for _, f := range n.HostFwd {
				netdev = append(netdev, "hostfwd="+f)
			}
		}
		a.add("-netdev", strings.Join(netdev, ","))

		dev := []string{value(n.Model, "virtio-net-pci"), "netdev=" + id, "mac=" + nicMAC(n, i)}
		if n.NoROM {
			dev = append(dev, "romfile=")
		}
		if n.BootIndex > 0 {
			dev = append(dev, "bootindex="+strconv.Itoa(n.BootIndex))
		}
		a.add("-device", strings.Join(dev, ","))
	}

	a.add(opts.ExtraArgs...)
	return a.args, nil
}

// validate reports every invalid field of opts at once.
func validate(opts Options) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if opts.Kernel == "" && opts.Initrd != "" {
		bad("initrd", "needs kernel (direct kernel boot)")
	}
	if opts.Kernel == "" && opts.Append != "" {
		bad("append", "needs kernel (direct kernel boot)")
	}
	if opts.Memory < 0 {
		bad("memory", "%d MiB is negative", opts.Memory)
	}
	if opts.CPUs < 0 {
		bad("cpus", "%d is negative", opts.CPUs)
	}
	if opts.Accel != "" && opts.Accel != "tcg" && opts.Accel != "kvm" {
		bad("accel", "%q is not tcg or kvm", opts.Accel)
	}
	if opts.StateDir == "" {
		bad("stateDir", "required (Start creates one when empty)")
	} else if p := filepath.Join(opts.StateDir, qmpSocketName); len(p) > maxSocketPath {
		bad("stateDir", "QMP socket path %s is longer than %d bytes", p, maxSocketPath)
	}
	for i, d := range opts.Disks {
		field := fmt.Sprintf("disks[%d]", i)
		if d.Path == "" {
			bad(field+".path", "required")
		}
		switch d.Format {
		case "", Raw, QCOW2:
		default:
			bad(field+".format", "%q is not one of %s, %s", d.Format, Raw, QCOW2)
		}
		switch d.Interface {
		case "", Virtio, USB, IDE, CDROM:
		default:
			bad(field+".interface", "%q is not one of %s, %s, %s, %s", d.Interface, Virtio, USB, IDE, CDROM)
		}
		if d.BootIndex < 0 {
			bad(field+".bootIndex", "%d is negative", d.BootIndex)
		}
	}
	for i, n := range opts.NICs {
		field := fmt.Sprintf("nics[%d]", i)
		if n.TAP != "" && (len(n.HostFwd) > 0 || n.TFTP != "" || n.BootFile != "") {
			bad(field, "hostFwd, tftp and bootFile need user-mode networking, not tap %q", n.TAP)
		}
		if n.MAC != "" {
			if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 {
				bad(field+".mac", "%q is not a 48-bit MAC address", n.MAC)
			}
		}
		for j, f := range n.HostFwd {
			if _, err := parseHostFwd(f); err != nil {
				bad(fmt.Sprintf("%s.hostFwd[%d]", field, j), "%v", err)
			}
		}
		if n.BootIndex < 0 {
			bad(field+".bootIndex", "%d is negative", n.BootIndex)
		}
	}
	return errors.Join(errs...)
}

// accelerator resolves Options.Accel; KVM is chosen only by explicit request.
func accelerator(accel string) string {
	if accel != "" {
		return accel
	}
	if os.Getenv("HARDVISOR_KVM") == "1" {
		return "kvm"
	}
	return "tcg"
}

// nicMAC is the MAC of NIC i: fixed, so a guest's view of its cards (and a
// per-host config selected by MAC) is the same on every run.
func nicMAC(n NIC, i int) string {
	if n.MAC != "" {
		return n.MAC
	}
	return fmt.Sprintf("52:54:00:12:34:%02x", (0x56+i)&0xff)
}

func varsPath(stateDir string) string { return filepath.Join(stateDir, varsFileName) }

// escape doubles commas, QEMU's quoting inside an option value.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func value(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func positive(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

type argv struct{ args []string }

func (a *argv) add(s ...string) { a.args = append(a.args, s...) }
