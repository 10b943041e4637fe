package flash

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystem lays out a sysfs and procfs: disk sda (8:0) with partitions
// sda1 (8:1) and sda2 (8:2), dm-0 (254:0) stacked on sda2; disk sdb (8:16)
// with sdb1 (8:17); disk sdc (8:32) unused. mountinfo and swaps are given.
func fakeSystem(t *testing.T, mountinfo, swaps string) System {
	t.Helper()
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	blk := filepath.Join(sys, "devices", "block")
	dev := func(dir, num string, partition bool) {
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "dev"), []byte(num+"\n"), 0o644)
		if partition {
			os.WriteFile(filepath.Join(dir, "partition"), []byte("1\n"), 0o644)
		}
		os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755)
		if err := os.Symlink(dir, filepath.Join(sys, "dev", "block", num)); err != nil {
			t.Fatal(err)
		}
	}
	dev(filepath.Join(blk, "sda"), "8:0", false)
	dev(filepath.Join(blk, "sda", "sda1"), "8:1", true)
	dev(filepath.Join(blk, "sda", "sda2"), "8:2", true)
	dev(filepath.Join(blk, "dm-0"), "254:0", false)
	os.MkdirAll(filepath.Join(blk, "sda", "sda2", "holders"), 0o755)
	os.Symlink(filepath.Join(blk, "dm-0"), filepath.Join(blk, "sda", "sda2", "holders", "dm-0"))
	os.MkdirAll(filepath.Join(blk, "dm-0", "slaves"), 0o755)
	os.Symlink(filepath.Join(blk, "sda", "sda2"), filepath.Join(blk, "dm-0", "slaves", "sda2"))
	dev(filepath.Join(blk, "sdb"), "8:16", false)
	dev(filepath.Join(blk, "sdb", "sdb1"), "8:17", true)
	dev(filepath.Join(blk, "sdc"), "8:32", false)
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(mountinfo), 0o644)
	os.WriteFile(filepath.Join(proc, "swaps"), []byte(swaps), 0o644)
	return System{Proc: proc, Sys: sys}
}

const mountinfo = `22 1 0:21 / /proc rw - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/mapper/root rw
28 27 8:1 / /boot/efi rw - vfat /dev/sda1 rw
40 27 8:17 / /media/usb\040stick rw - vfat /dev/sdb1 rw
`

func TestCheckDevice(t *testing.T) {
	s := fakeSystem(t, mountinfo, "Filename Type Size Used Priority\n")
	for _, tc := range []struct{ dev, want string }{
		{"8:0", "the disk the running system's root file system (/) is on"},
		{"8:1", "sda1 is a partition of sda"},
		{"8:16", "sdb1 is mounted at /media/usb stick"},
		{"8:32", ""},
	} {
		err := s.checkDevice("/dev/x", tc.dev)
		var r *RefusedError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.dev, err)
		case tc.want != "" && (!errors.As(err, &r) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal containing %q", tc.dev, err, tc.want)
		}
	}
	// A holder (dm-0 on sdb) mounted somewhere makes sdb busy even with no
	// partition of its own mounted.
	s = fakeSystem(t, "27 1 8:32 / / rw - ext4 /dev/sdc rw\n30 27 254:0 / /srv rw - ext4 /dev/dm-0 rw\n", "")
	if err := s.checkDevice("/dev/sda", "8:0"); err == nil || !strings.Contains(err.Error(), "dm-0 is mounted at /srv") {
		t.Errorf("disk under a mounted dm device: %v", err)
	}
	if err := s.checkDevice("/dev/sdc", "8:32"); err == nil || !strings.Contains(err.Error(), "root file system") {
		t.Errorf("root disk: %v", err)
	}
}

func TestParseMountInfo(t *testing.T) {
	mt, err := parseMountInfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := mt.at("/"); !ok || d != "254:0" {
		t.Errorf("root = %q %v", d, ok)
	}
	if got := mt.of("8:17"); len(got) != 1 || got[0] != "/media/usb stick" {
		t.Errorf("mounts of 8:17 = %q", got)
	}
}

func image(t *testing.T, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hardvisor.img")
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i / 512)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlashFile(t *testing.T) {
	img := image(t, 3<<20+512)
	dst := filepath.Join(t.TempDir(), "stick.img")
	os.WriteFile(dst, []byte("old"), 0o644)
	var r *RefusedError
	if _, err := Flash(img, dst, Options{}); !errors.As(err, &r) || !strings.Contains(err.Error(), "not a block device") {
		t.Fatalf("regular file without AllowFile: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Fatal("a refused flash wrote the target")
	}
	if _, err := Flash(img, img, Options{AllowFile: true}); !errors.As(err, &r) {
		t.Errorf("image onto itself: %v", err)
	}
	if _, err := Flash(img, "/dev/null", Options{AllowFile: true}); !errors.As(err, &r) {
		t.Errorf("character device: %v", err)
	}
	var progress bytes.Buffer
	res, err := Flash(img, dst, Options{AllowFile: true, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(img)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) || res.Bytes != int64(len(want)) {
		t.Errorf("target holds %d bytes, want the %d of the image", len(got), len(want))
	}
	if !strings.Contains(progress.String(), "write ") || !strings.Contains(progress.String(), "verify ") || !strings.Contains(progress.String(), "100%") {
		t.Errorf("progress output %q", progress.String())
	}
}

// TestFlashLoop uses loop devices (root only): a big enough one is written
// and verified, a small one and a mounted one are refused untouched, and the
// disk holding / is refused (by Check only: nothing is ever opened for
// writing there).
func TestFlashLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup")
	}
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		t.Skip("losetup not installed")
	}
	loop := func(size int64) string {
		t.Helper()
		f := filepath.Join(t.TempDir(), "backing")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(f, size)
		out, err := exec.Command(losetup, "--find", "--show", f).Output()
		if err != nil {
			t.Skipf("losetup: %v", err)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command(losetup, "-d", dev).Run() })
		return dev
	}
	img := image(t, 4<<20)
	var r *RefusedError

	big := loop(8 << 20)
	res, err := Flash(img, big, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4<<20)
	f, _ := os.Open(big)
	f.ReadAt(got, 0)
	f.Close()
	if want, _ := os.ReadFile(img); !bytes.Equal(got, want) || res.Bytes != 4<<20 {
		t.Error("loop device does not hold the image")
	}

	small := loop(2 << 20)
	if _, err := Flash(img, small, Options{}); !errors.As(err, &r) || !strings.Contains(err.Error(), "the image is") {
		t.Errorf("small device: %v", err)
	}

	// A mounted device (ext4: this kernel may lack vfat).
	if mkfs, err := exec.LookPath("mkfs.ext4"); err == nil {
		m := loop(40 << 20)
		mnt := t.TempDir()
		if out, err := exec.Command(mkfs, "-q", m).CombinedOutput(); err != nil {
			t.Errorf("mkfs.ext4: %v %s", err, out)
		} else if out, err := exec.Command("mount", m, mnt).CombinedOutput(); err != nil {
			t.Logf("mount (not tested): %v %s", err, out)
		} else {
			t.Cleanup(func() { exec.Command("umount", mnt).Run() })
			if _, err := Flash(img, m, Options{}); !errors.As(err, &r) || !strings.Contains(err.Error(), "mounted at "+mnt) {
				t.Errorf("mounted device: %v", err)
			}
		}
	}

	mt, err := (System{}).mounts()
	if err != nil {
		t.Fatal(err)
	}
	if rootDev, ok := mt.at("/"); ok {
		disks := (System{}).disksUnder(rootDev, 0)
		for _, d := range disks {
			node := "/sys/dev/block/" + d
			name, err := filepath.EvalSymlinks(node)
			if err != nil {
				continue
			}
			devPath := "/dev/" + filepath.Base(name)
			if _, err := os.Stat(devPath); err != nil {
				continue
			}
			if err := Check(img, devPath, Options{}); !errors.As(err, &r) {
				t.Errorf("Check of the root disk %s: %v, want a refusal", devPath, err)
			} else {
				t.Logf("root disk refused: %v", err)
			}
		}
	}
}
