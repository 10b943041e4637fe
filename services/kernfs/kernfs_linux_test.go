package kernfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestKernfs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "setting")
	if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, werr, err := WriteRead(p, "2")
	if err != nil || werr != nil || string(got) != "2\n" {
		t.Fatalf("WriteRead = %q, %v, %v; want the value read back through the same fd", got, werr, err)
	}
	if b, err := Read(p); err != nil || string(b) != "2\n" {
		t.Fatalf("Read = %q, %v", b, err)
	}
	// Write neither truncates nor appends: it writes at the start, as a
	// setting's value is written.
	if err := Write(p, "7"); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(p); err != nil || string(b) != "7\n" {
		t.Fatalf("after Write, Read = %q, %v", b, err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, _, err := WriteRead(missing, "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteRead of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := Read(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing file: %v, want ErrNotExist", err)
	}
	if err := Write(missing, "1"); !errors.Is(err, fs.ErrNotExist) || err.Error() != "open "+missing+": no such file or directory" {
		t.Errorf("Write of a missing file: %v, want ErrNotExist naming it", err)
	}
	// A write the kernel refuses is an error naming the file.
	if err := Write("/dev/full", "x"); !errors.Is(err, syscall.ENOSPC) || err.Error() != "write /dev/full: no space left on device" {
		t.Errorf("Write to /dev/full: %v, want ENOSPC naming it", err)
	}
}
