package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/qemu-tests/testguest"
)

// guestsConfig is a debug host with a guest network on its second NIC and
// two tiny guests on it.
const guestsConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-guests
profile: debug
resources:
  reserve: {memory: 512Mi, cpus: 1}
networks:
  - {name: lab, uplinks: [{mac: "52:54:00:12:34:57"}]}
templates:
  - name: tiny
    cpus: 1
    memory: 16Mi
    disk: 1Mi
    limits: {cpu: 50%, cpuWeight: 200, memory: 200Mi, iops: 500, bandwidth: 10Mi, pids: 64}
guests:
  - {name: alpha, template: tiny, network: lab, autostart: true, image: alpha.img}
  - {name: beta, template: tiny, network: lab, autostart: true, image: beta.img}
`

// dataDisk makes a disk holding only an ext4 HV-DATA partition, for a host
// booted without a boot disk (direct kernel boot) to keep its state on.
func dataDisk(t *testing.T, size int64) string {
	t.Helper()
	mke2fs := needTool(t, "mke2fs", "e2fsprogs")
	p := filepath.Join(t.TempDir(), "data.img")
	d, err := diskfs.Create(p, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	const first = 2048
	last := uint64(size/512) - 34
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*gpt.Partition{{Index: 1, Start: first, End: last, Type: gpt.LinuxFilesystem, Name: "HV-DATA"}}}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	d.Close()
	var _ *disk.Disk = d
	off := strconv.FormatInt(first*512, 10)
	blocks := strconv.FormatUint((last-first+1)*512/4096, 10)
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-L", "HV-DATA", "-b", "4096", "-E", "offset="+off, p, blocks).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return p
}

// guestImages makes a tiny idle test guest's disk image for each name,
// named <name>.img, for buildConfig to put beside the config.
func guestImages(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, n := range names {
		img, err := testguest.Guest{Name: n, Mode: testguest.ModeIdle}.Image()
		if err != nil {
			t.Fatal(err)
		}
		files[n+".img"] = img
	}
	return files
}

// noVirtCPU is TCG's default CPU without hardware virtualization.
const noVirtCPU = "qemu64,-svm,-vmx"

func TestGuests(t *testing.T) {
	dir := buildConfig(t, "guests", guestsConfig, guestImages(t, "alpha", "beta"))
	fi, _ := os.Stat(filepath.Join(dir, "hardvisor.efi"))
	t.Logf("UKI %d bytes", fi.Size())
	data := dataDisk(t, 256<<20)
	vm := directBoot(t, dir, func(o *qemu.Options) {
		o.NICs = []qemu.NIC{{}, {}}
		o.Disks = []qemu.Disk{{Path: data}}
		o.Memory = 1536
		o.CPUs = 2
		// TCG's CPU offers SVM, so the host would find KVM usable and
		// run guests (and libvirt's probe) on a KVM nested in TCG.
		o.CPU = noVirtCPU
	})
	expect(t, vm, readyLine("0.1.0-guests"), bootTimeout)
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	sh := &shell{t: t, vm: vm}
	t.Log(sh.run("hvstatus"))
	t.Log(sh.run("free"))
	for i := 0; i < 40; i++ {
		if i%5 == 4 {
			t.Log(sh.run("for p in $(cat /sys/fs/cgroup/hardvisor.slice/libvirtd/cgroup.procs); do cat /proc/$p/cmdline; echo; done"))
			t.Log(sh.run("ls /var/cache/libvirt/qemu/capabilities/ /run/libvirt/qemu /var/log/libvirt/qemu; cat /var/log/libvirt/qemu/*.log"))
		}
		out := sh.run("cat /var/lib/hardvisor/guests/alpha/console.log")
		t.Log(out)
		if strings.Contains(out, testguest.UpLine("alpha")) {
			break
		}
		time.Sleep(3 * time.Second)
	}
	for _, l := range strings.Split(vm.Console(), "\n") {
		if strings.HasPrefix(l, "vmm:") || strings.HasPrefix(l, "libvirtd:") || strings.Contains(l, "avc:") {
			t.Log(l)
		}
	}
	t.Log(sh.run("dmesg | grep avc"))
	t.Log(sh.run("ps"))
	t.Log(sh.run("find /sys/fs/cgroup/machine"))
	t.Log(sh.run("dmesg | tail -n 40"))
	powerDown(t, vm)
}
