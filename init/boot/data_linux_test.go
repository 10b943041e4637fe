package boot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/image/mkfs"
	"hardvisor.dev/hardvisor/services/spawn"
)

// TestFormat runs the step's mke2fs on an image file, as PID 1 does on the
// partition, and checks the result with e2fsprogs' own tools.
func TestFormat(t *testing.T) {
	if _, err := os.Stat(mkfs.Mke2fs); err != nil {
		t.Skipf("%s: %v (package e2fsprogs)", mkfs.Mke2fs, err)
	}
	img := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 80*mib); err != nil {
		t.Fatal(err)
	}
	s := DataPartition{Spawner: spawn.WaitSpawner{}}.defaults()
	if err := s.format(img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, err := ReadProbe(f, 80*mib); err != nil || ProbeFS(b) != FSExt4 {
		t.Errorf("ProbeFS after format = %v (%v), want ext4", ProbeFS(b), err)
	}
	fsck(t, img)
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	for _, want := range []string{"Filesystem volume name:   HV-DATA", "Block size:               4096"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dumpe2fs -h lacks %q:\n%s", want, out)
		}
	}
}

// TestFormatFails reports mke2fs's own message.
func TestFormatFails(t *testing.T) {
	if _, err := os.Stat(mkfs.Mke2fs); err != nil {
		t.Skipf("%s: %v", mkfs.Mke2fs, err)
	}
	s := DataPartition{Spawner: spawn.WaitSpawner{}}.defaults()
	err := s.format("/nonexistent/dev")
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "/nonexistent/dev") {
		t.Errorf("format of a missing device: %v", err)
	}
}

func fsck(t *testing.T, dev string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-n", "-f", dev).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -n -f %s: %v\n%s", dev, err, out)
	}
}

// TestCreateOnLoopDevice runs the step's create, format and mount on a loop
// device holding a grown image: the kernel learns the new partition without
// a rescan, and the boot counter survives a remount. Needs root.
func TestCreateOnLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices")
	}
	img := writeImage(t, 10*mib, 128*mib, nil)
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := filepath.Base(strings.TrimSpace(string(out)))
	t.Cleanup(func() { exec.Command("losetup", "-d", "/dev/"+loop).Run() })

	var console bytes.Buffer
	s := DataPartition{Host: &Host{Console: &console}, Spawner: spawn.WaitSpawner{}, Target: t.TempDir()}.defaults()
	disks, err := ScanBlock("/sys/class/block")
	if err != nil {
		t.Fatal(err)
	}
	var boot *BlockDisk
	for i := range disks {
		if disks[i].Name == loop {
			boot = &disks[i]
		}
	}
	if boot == nil {
		t.Fatalf("%s not found by ScanBlock: %+v", loop, disks)
	}
	if table, err := readGPT("/dev/" + loop); err != nil || FindPartitionGUID(table, fixtureESP) == nil {
		t.Fatalf("the ESP's GUID is not found on /dev/%s: %v", loop, err)
	}
	c, err := s.create(boot)
	if err != nil {
		t.Fatal(err)
	}
	if c.Part.Number != 2 || c.Part.Size != (128*mib/512-34-9*mib/512+1)*512 || c.Part.Dev != loop+"p2" {
		t.Errorf("created %+v", c.Part)
	}
	dev := "/dev/" + c.Part.Dev
	if st, err := probeDevice(dev, c.Part.Size); err != nil || st != FSBlank {
		t.Fatalf("new partition is %v (%v), want blank", st, err)
	}
	if err := s.format(dev); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		if err := unix.Mount(dev, s.Target, "ext4", nodev|nosuid|noexec, ""); err != nil {
			t.Fatal(err)
		}
		n, err := IncrementBootCount(s.Target)
		if uerr := unix.Unmount(s.Target, 0); uerr != nil {
			t.Fatal(uerr)
		}
		if err != nil || n != want {
			t.Fatalf("boot count %d, %v; want %d", n, err, want)
		}
	}
	fsck(t, dev)
	verifyWithTools(t, img, 128*mib, "")
}
