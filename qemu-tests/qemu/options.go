package qemu

import "io"

// Default paths and sizes used when the matching Options field is empty.
const (
	// DefaultBinary is the QEMU system emulator started for every VM.
	DefaultBinary = "qemu-system-x86_64"
	// DefaultMemory is the guest RAM in MiB.
	DefaultMemory = 512
	// DefaultCPUs is the number of guest vCPUs.
	DefaultCPUs = 1
	// DefaultMachine is the QEMU machine type.
	DefaultMachine = "q35"
	// DefaultName names a VM in logs when Options.Name is empty.
	DefaultName = "vm"

	// OVMFCode is Debian's (package ovmf) UEFI firmware without Secure Boot.
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	// OVMFVars is the empty variable store matching OVMFCode.
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// OVMFSnakeoilCode is Debian's Secure Boot firmware build (it requires SMM).
	OVMFSnakeoilCode = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"
	// OVMFSnakeoilVars is a variable store with Debian's snakeoil test key
	// enrolled as PK/KEK/db and Secure Boot enabled; the key pair is
	// /usr/share/ovmf/PkKek-1-snakeoil.{key,pem}.
	OVMFSnakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// Disk interfaces accepted in Disk.Interface.
const (
	Virtio = "virtio" // virtio-blk-pci
	USB    = "usb"    // removable usb-storage on a qemu-xhci controller (a USB stick)
	IDE    = "ide"    // ide-hd on the machine's built-in IDE/AHCI controller
	CDROM  = "cdrom"  // ide-cd, always read-only (an ISO on virtual media)
)

// Disk image formats accepted in Disk.Format.
const (
	Raw   = "raw"
	QCOW2 = "qcow2"
)

// Options describes one VM. The zero value of every field is a sensible
// default; Start fills in what the builder of the argv needs.
type Options struct {
	// Name identifies the VM in logs and in the console log file name.
	// Empty means DefaultName (StartT uses the test name).
	Name string

	// QEMU is the emulator binary, a path or a name looked up in $PATH.
	// Empty means DefaultBinary.
	QEMU string

	// Kernel, Initrd and Append select direct kernel boot (-kernel, -initrd,
	// -append). Initrd and Append need Kernel.
	Kernel string
	Initrd string
	Append string

	// Firmware selects UEFI boot with OVMF. Nil means QEMU's default BIOS
	// (SeaBIOS). Firmware and Kernel may be combined (OVMF then loads the
	// kernel through fw_cfg).
	Firmware *Firmware

	// Disks are attached in order; disk i gets the drive id "disk<i>".
	Disks []Disk

	// NICs are attached in order; NIC i gets the netdev id "net<i>".
	NICs []NIC

	// Memory is the guest RAM in MiB; 0 means DefaultMemory.
	Memory int
	// CPUs is the number of vCPUs; 0 means DefaultCPUs.
	CPUs int
	// Machine is the QEMU machine type; empty means DefaultMachine.
	Machine string
	// CPU is the -cpu model. Empty means QEMU's default under TCG and
	// "host" under KVM.
	CPU string
	// Accel is "tcg" or "kvm". Empty means kvm when the environment has
	// HARDVISOR_KVM=1 and tcg otherwise. This machine's /dev/kvm is not
	// usable, so nothing probes it.
	Accel string

	// NoReboot passes -no-reboot: a guest reboot ends QEMU instead of
	// restarting the machine.
	NoReboot bool

	// StateDir holds per-VM files: the OVMF variable store (copied from
	// Firmware.Vars unless the file is already there, so a VM started with
	// the StateDir of an earlier VM keeps its UEFI variables) and the QMP
	// socket. Empty means Start creates a temporary directory and removes
	// it on Close. Args requires it. Keep it short: the QMP socket path
	// must fit in 107 bytes.
	StateDir string

	// Console, when set, receives a live copy of the serial console.
	Console io.Writer

	// ExtraArgs are appended to the argv unchanged.
	ExtraArgs []string
}

// Firmware is a UEFI firmware pair: read-only code and a variable store
// template that is copied for each VM (OVMF writes to its variables).
type Firmware struct {
	// Code is the firmware code flash image; empty means OVMFCode.
	Code string
	// Vars is the variable store template; empty means OVMFVars.
	Vars string
	// SMM marks a firmware built with SMM_REQUIRE (Debian's *.secboot.fd,
	// *.ms.fd and *.snakeoil.fd): the machine gets smm=on and the code
	// flash is made secure, or the firmware does not start.
	SMM bool
}

// SnakeoilFirmware returns the Secure Boot firmware with Debian's snakeoil
// key enrolled, for tests of signed UKIs and boot loaders.
func SnakeoilFirmware() *Firmware {
	return &Firmware{Code: OVMFSnakeoilCode, Vars: OVMFSnakeoilVars, SMM: true}
}

// Disk is one block device. A disk without Snapshot writes to Path, so the
// same file given to a later VM has what the earlier one wrote.
type Disk struct {
	// Path is the image file.
	Path string
	// Format is Raw or QCOW2; empty means Raw.
	Format string
	// Interface is Virtio, USB, IDE or CDROM; empty means Virtio.
	Interface string
	// ReadOnly opens the image read-only (forced for CDROM).
	ReadOnly bool
	// Snapshot writes to a throwaway overlay; Path is never modified.
	Snapshot bool
	// BootIndex orders boot devices for the firmware (1 is tried first);
	// 0 leaves the order to the firmware.
	BootIndex int
}

// NIC is one virtio network card, backed by user-mode networking (slirp)
// unless TAP is set.
type NIC struct {
	// TAP is the name of an existing host tap device; empty means user-mode
	// networking, where the host's 127.0.0.1 is 10.0.2.2 in the guest.
	TAP string
	// MAC is the card's address; empty means 52:54:00:12:34:<0x56+i> for
	// NIC i, so every run of a config sees the same addresses.
	MAC string
	// Model is the QEMU device; empty means virtio-net-pci.
	Model string
	// HostFwd are user-net port forwards in QEMU's syntax,
	// "tcp:127.0.0.1:0-:8443". Host port 0 means Start picks a free port;
	// VM.HostPort reports it.
	HostFwd []string
	// TFTP is a host directory served by user-net's TFTP server, and
	// BootFile the file name announced by its DHCP server (PXE).
	TFTP     string
	BootFile string
	// NoROM sets romfile= so the card loads no option ROM (iPXE).
	NoROM bool
	// BootIndex orders boot devices for the firmware (1 is tried first);
	// 0 leaves the order to the firmware.
	BootIndex int
}
