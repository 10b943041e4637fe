// Package hypervisor is what an image carries to run guests: Debian's
// libvirtd with its QEMU connection driver and QEMU with its TCG accelerator
// (both dlopen'd, so the closure step cannot see them), the firmware files
// QEMU actually opens, libvirt's CPU map, and the two configuration files
// that make libvirt fit the appliance: a daemon that listens on its unix
// socket alone, and guests that must run confined by SELinux (sVirt) and
// QEMU's seccomp sandbox.
package hypervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"hardvisor.dev/hardvisor/image/closure"
	"hardvisor.dev/hardvisor/image/rootfs"
	"hardvisor.dev/hardvisor/services/catalog"
)

// Programs on the build host and, at the same paths, in the image.
const (
	Libvirtd = catalog.Libvirtd
	QEMU     = "/usr/bin/qemu-system-x86_64"
	// Dmidecode gives libvirt the machine's SMBIOS tables (host sysinfo).
	Dmidecode = "/usr/sbin/dmidecode"
)

// QEMUUser is the unprivileged account libvirt runs every QEMU process as
// (Debian's libvirt-qemu, with its uid and gid), and KVMGroup the group that
// may open /dev/kvm.
const (
	QEMUUser       = "libvirt-qemu"
	QEMUUID        = 64055
	KVMGroup       = "kvm"
	KVMGID         = 64056
	QEMUGroup      = "libvirt-qemu"
	QEMUPrimaryGID = 64055
)

// dlopened are the modules libvirtd and QEMU load at run time.
var dlopened = []string{
	"/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
	"/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so",
}

// firmware is what QEMU opens for an x86 guest that boots from its disk
// through SeaBIOS with no VGA and no NIC option ROM.
var firmware = []string{
	"/usr/share/seabios/bios-256k.bin",
	"/usr/share/qemu/kvmvapic.bin",
	"/usr/share/qemu/linuxboot_dma.bin",
}

// CPUMapDir holds libvirt's CPU models; only the x86 ones are taken.
const CPUMapDir = "/usr/share/libvirt/cpu_map"

// Spec is the payload's closure.
func Spec() (closure.Spec, error) {
	x86, err := filepath.Glob(filepath.Join(CPUMapDir, "x86_*.xml"))
	if err != nil || len(x86) == 0 {
		return closure.Spec{}, fmt.Errorf("libvirt's CPU map %s/x86_*.xml missing: apt-get install libvirt-daemon", CPUMapDir)
	}
	extra := slices.Concat(dlopened, firmware, []string{filepath.Join(CPUMapDir, "index.xml")}, x86)
	return closure.Spec{Binaries: []string{Libvirtd, QEMU, Dmidecode}, Extra: extra}, nil
}

// Packages are the Debian packages the payload comes from, for the error
// that names what to install.
var Packages = []string{"libvirt-daemon", "libvirt-daemon-driver-qemu", "qemu-system-x86", "dmidecode"}

// Resolve collects the payload from the build host.
func Resolve() (*closure.Closure, error) {
	for _, p := range []string{Libvirtd, QEMU, Dmidecode} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("guests need %s, which is missing: apt-get install %v", p, Packages)
		}
	}
	spec, err := Spec()
	if err != nil {
		return nil, err
	}
	return closure.Resolve(spec, closure.Options{})
}

// LibvirtdConf is /etc/libvirt/libvirtd.conf: the read-write unix socket
// only (root's; vmm is root), no TCP or TLS listener (libvirtd opens those
// only with --listen, which the service never passes), no polkit (there is
// none), logs to stderr where the service manager collects them.
const LibvirtdConf = `# hardvisor: libvirtd listens on its unix sockets only.
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
`

// QEMUConf is /etc/libvirt/qemu.conf: every guest confined by SELinux
// (libvirt refuses to start one it cannot label), QEMU's seccomp sandbox,
// QEMU as libvirt-qemu, console output straight into files (no virtlogd).
const QEMUConf = `# hardvisor: guests run confined.
security_driver = "selinux"
security_default_confined = 1
security_require_confined = 1
seccomp_sandbox = 1
user = "` + QEMUUser + `"
group = "` + QEMUGroup + `"
dynamic_ownership = 1
remember_owner = 0
stdio_handler = "file"
vnc_listen = "127.0.0.1"
`

// Accounts are the passwd and group lines the payload needs beside root's.
var (
	Passwd = []string{fmt.Sprintf("%s:x:%d:%d:libvirt qemu:/var/lib/libvirt:/bbin/false", QEMUUser, QEMUUID, QEMUPrimaryGID)}
	Group  = []string{fmt.Sprintf("%s:x:%d:", QEMUGroup, QEMUPrimaryGID), fmt.Sprintf("%s:x:%d:%s", KVMGroup, KVMGID, QEMUUser)}
)

// AddTo puts the payload and its configuration into t.
func AddTo(t *rootfs.Tree, c *closure.Closure) error {
	if err := c.AddTo(t); err != nil {
		return err
	}
	for _, f := range []struct {
		path, data string
	}{{"etc/libvirt/libvirtd.conf", LibvirtdConf}, {"etc/libvirt/qemu.conf", QEMUConf}} {
		if err := t.AddData(f.path, []byte(f.data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Where the packed payload lives on the running host (see catalog).
const (
	ImagePath = catalog.PayloadImage
	MountDir  = catalog.PayloadDir
)

// Layouts of the payload in the image.
const (
	// Squashfs packs the payload into one compressed read-only image that
	// PID 1 mounts: RAM holds the compressed image and the pages in use.
	Squashfs = "squashfs"
	// Initramfs leaves the payload's files in the initramfs, where each
	// takes its full size in RAM for as long as the host runs.
	Initramfs = "initramfs"
)

// Layouts lists the payload layouts, the default first.
var Layouts = []string{Squashfs, Initramfs}
