package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// dataDiskSize is the stick the image is "written to" in TestDataPartition.
const dataDiskSize = 512 << 20

// TestDataPartition writes out/hardvisor.img to a bigger (512 MiB) disk,
// attached by virtio and as a USB stick (whose disk the kernel finds only
// after PID 1's modules step), and boots it twice under OVMF. The first boot
// creates HV-DATA in the free space, formats and mounts it and counts boot 1;
// the second finds it and counts boot 2, so the file written on the first
// boot survived. On the host afterwards: the GPT has the ESP unchanged and
// HV-DATA as partition 2 up to the disk's last usable sector with the backup
// GPT at the real end, and the file system is clean and holds the count.
func TestDataPartition(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	src := filepath.Join(dir, build.DiskImage)
	if _, err := os.Stat(src); err != nil {
		t.Skipf("no disk image to boot: %v", err)
	}
	e2fsck := needTool(t, "e2fsck", "e2fsprogs")
	debugfs := needTool(t, "debugfs", "e2fsprogs")
	for _, iface := range []string{qemu.Virtio, qemu.USB} {
		t.Run(iface, func(t *testing.T) {
			img := grownCopy(t, src, dataDiskSize)
			before := readGPT(t, img)
			for boot := 1; boot <= 2; boot++ {
				vm := qemu.StartT(t, qemu.Options{Name: "data-" + iface + "-boot" + strconv.Itoa(boot), Firmware: &qemu.Firmware{},
					Disks: []qemu.Disk{{Path: img, Interface: iface, BootIndex: 1}}, NoReboot: true})
				line := expect(t, vm, readyLine(m.Version), bootTimeout)
				if want := regexp.MustCompile(`\bboots=` + strconv.Itoa(boot) + `\b`); !want.MatchString(line[0]) {
					t.Errorf("boot %d: ready line %q does not match %v", boot, line[0], want)
				}
				dataLine := regexp.MustCompile(`hardvisor: data: .*`).FindString(vm.Console())
				t.Logf("boot %d: %s", boot, strings.TrimSpace(dataLine))
				created := strings.Contains(dataLine, "(created, formatted) mounted on /var/lib/hardvisor")
				if created != (boot == 1) {
					t.Errorf("boot %d: data partition created: %v, want %v\n%s", boot, created, boot == 1, vm.Tail(30))
				}
				powerDown(t, vm)
			}
			checkDataDisk(t, img, before, e2fsck, debugfs, "2\n")
		})
	}
}

// TestDataPartitionNoRoom boots out/hardvisor.img on a disk of its own size
// (a snapshot, so out/ is untouched): there is no room for HV-DATA, and the
// host says so and does not come up without its persistent state.
func TestDataPartitionNoRoom(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	src := filepath.Join(dir, build.DiskImage)
	if _, err := os.Stat(src); err != nil {
		t.Skipf("no disk image to boot: %v", err)
	}
	vm := qemu.StartT(t, qemu.Options{Firmware: &qemu.Firmware{},
		Disks: []qemu.Disk{{Path: src, Snapshot: true, BootIndex: 1}}, NoReboot: true})
	expect(t, vm, regexp.MustCompile(`hardvisor: data: /dev/\w+: no room for the data partition: 0 MiB free after the last partition, HV-DATA needs at least 64 MiB: write the image to a bigger disk; running without persistent state`), bootTimeout)
	m := readManifest(t, dir)
	if line := expect(t, vm, readyLine(m.Version), bootTimeout); !strings.Contains(line[0], "boots=0") {
		t.Errorf("ready line %q: want boots=0 without a data partition", line[0])
	}
	powerDown(t, vm)
}

// checkDataDisk checks, on the host, the disk image img that PID 1 added
// HV-DATA to; before is its GPT as built, count the boot-count file's content.
func checkDataDisk(t *testing.T, img string, before *gpt.Table, e2fsck, debugfs, count string) {
	t.Helper()
	after := readGPT(t, img)
	if len(after.Partitions) != 2 {
		t.Fatalf("GPT after boot has %d partitions, want the ESP and HV-DATA: %+v", len(after.Partitions), after.Partitions)
	}
	esp, data := after.Partitions[0], after.Partitions[1]
	if *esp != *before.Partitions[0] || after.GUID != before.GUID {
		t.Errorf("ESP or disk GUID changed: %+v (%s), was %+v (%s)", esp, after.GUID, before.Partitions[0], before.GUID)
	}
	if last := uint64(dataDiskSize/512 - 34); data.Index != 2 || data.Name != "HV-DATA" || data.End != last || data.Type != gpt.LinuxFilesystem {
		t.Errorf("partition 2 = %+v, want HV-DATA (Linux file system) up to sector %d", data, last)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := after.Verify(f, dataDiskSize); err != nil {
		t.Errorf("backup GPT: %v", err)
	}
	fs := img + "?offset=" + strconv.FormatUint(data.Start*512, 10)
	if out, err := exec.Command(e2fsck, "-n", "-f", fs).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -n -f %s: %v\n%s", fs, err, out)
	}
	out, err := exec.Command(debugfs, "-R", "cat /boot-count", fs).Output()
	if err != nil || string(out) != count {
		t.Errorf("boot-count on HV-DATA = %q (%v), want %q", out, err, count)
	}
}

// grownCopy copies the disk image src (sparsely) to a temporary file of size
// bytes, as if it had been written to a bigger stick, and returns its path.
func grownCopy(t *testing.T, src string, size int64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", src, err, out)
	}
	if err := os.Truncate(dst, size); err != nil {
		t.Fatal(err)
	}
	return dst
}

func readGPT(t *testing.T, img string) *gpt.Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatalf("read GPT of %s: %v", img, err)
	}
	return table
}
