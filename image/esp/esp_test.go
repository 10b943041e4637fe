package esp

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestValidSize(t *testing.T) {
	for mib, ok := range map[int64]bool{34: true, 48: true, 63: true, 64: false, 65: true, 128: true, 129: false,
		194: false, 256: true, 259: false, 512: true, 20: false} {
		err := ValidSize(mib * MiB)
		if (err == nil) != ok {
			t.Errorf("ValidSize(%d MiB) = %v, want ok=%v", mib, err, ok)
		}
		if err != nil && !errors.Is(err, ErrSize) {
			t.Errorf("ValidSize(%d MiB) error %v is not ErrSize", mib, err)
		}
	}
	if got := SizeFor(63*MiB-4*MiB-63*MiB/16, 0); ValidSize(got) != nil {
		t.Errorf("SizeFor returned unusable size %d", got)
	}
}

func TestFatTime(t *testing.T) {
	for _, tc := range []struct {
		epoch     int64
		date, tod uint16
	}{
		{0, 1<<5 | 1, 0}, // before 1980: clamped to 1980-01-01
		{1700000000, (2023-1980)<<9 | 11<<5 | 14, 22<<11 | 13<<5 | 10}, // 2023-11-14 22:13:20
	} {
		if d, tod := fatTime(tc.epoch); d != tc.date || tod != tc.tod {
			t.Errorf("fatTime(%d) = %#x %#x, want %#x %#x", tc.epoch, d, tod, tc.date, tc.tod)
		}
	}
}

// TestWriteReproducibleAndClean writes the same files twice (with different
// clocks as go-diskfs sees them) and gets the same bytes, a file system fsck.vfat accepts, and the
// files back.
func TestWriteReproducibleAndClean(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	big := make([]byte, 3*MiB+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(src, big, 0o644); err != nil {
		t.Fatal(err)
	}
	files := []File{{Path: "EFI/BOOT/BOOTX64.EFI", Source: src}, {Path: "loader/loader.conf", Data: []byte("timeout 0\n")},
		{Path: "EFI/Linux/hardvisor-1.0.0+3.efi", Data: []byte("uki")}}
	var imgs [][]byte
	for i := 0; i < 2; i++ {
		// go-diskfs stamps entries from SOURCE_DATE_EPOCH or the clock:
		// normalize must override either.
		if i == 1 {
			t.Setenv("SOURCE_DATE_EPOCH", "1000000000")
		}
		p := filepath.Join(dir, "fat"+string(rune('0'+i)))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(40 * MiB); err != nil {
			t.Fatal(err)
		}
		if err := Write(f, 0, 40*MiB, files, Options{Label: "TEST", VolumeID: 0x12345678, Epoch: 1700000000}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		b, _ := os.ReadFile(p)
		imgs = append(imgs, b)
		if fsck, err := exec.LookPath("fsck.vfat"); err == nil {
			if out, err := exec.Command(fsck, "-n", p).CombinedOutput(); err != nil {
				t.Errorf("fsck.vfat -n: %v\n%s", err, out)
			}
		}
		if _, err := exec.LookPath("mcopy"); err == nil {
			out, err := exec.Command("mcopy", "-i", p, "::/EFI/BOOT/BOOTX64.EFI", "-").Output()
			if err != nil || string(out) != string(big) {
				t.Errorf("mcopy BOOTX64.EFI: %v (%d bytes, want %d)", err, len(out), len(big))
			}
		}
	}
	if string(imgs[0]) != string(imgs[1]) {
		t.Error("two writes of the same files differ")
	}
	if err := Write(nil, 0, 64*MiB, files, Options{}); !errors.Is(err, ErrSize) {
		t.Errorf("Write at 64 MiB: %v, want ErrSize", err)
	}
}
