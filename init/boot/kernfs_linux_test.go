package boot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestKernfs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "setting")
	if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, werr, err := writeReadKernfs(p, "2")
	if err != nil || werr != nil || string(got) != "2\n" {
		t.Fatalf("writeReadKernfs = %q, %v, %v; want the value read back through the same fd", got, werr, err)
	}
	if b, err := readKernfs(p); err != nil || string(b) != "2\n" {
		t.Fatalf("readKernfs = %q, %v", b, err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, _, err := writeReadKernfs(missing, "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("writeReadKernfs of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := readKernfs(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readKernfs of a missing file: %v, want ErrNotExist", err)
	}
}
