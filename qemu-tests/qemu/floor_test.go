package qemu

import (
	"bytes"
	"debug/elf"
	"os"
	"slices"
	"testing"

	"github.com/u-root/mkuimage/cpio"
)

func TestBuildFloorInitramfs(t *testing.T) {
	dir := t.TempDir()
	path, err := BuildFloorInitramfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name           string
		mode           uint64
		rmajor, rminor uint64
	}
	var got []entry
	for _, r := range recs {
		got = append(got, entry{r.Name, r.Mode, r.Rmajor, r.Rminor})
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want all 0 (reproducible)", r.Name, r.MTime, r.UID, r.GID)
		}
	}
	want := []entry{
		{"dev", cpio.S_IFDIR | 0o755, 0, 0},
		{"dev/console", cpio.S_IFCHR | 0o600, 5, 1},
		{"init", cpio.S_IFREG | 0o755, 0, 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records = %+v, want %+v", got, want)
	}

	init, err := elf.NewFile(recs[2])
	if err != nil {
		t.Fatalf("init is not an ELF file: %v", err)
	}
	if init.Machine != elf.EM_X86_64 {
		t.Errorf("init machine = %v, want x86-64", init.Machine)
	}
	for _, p := range init.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("init has an ELF interpreter: it is not static")
		}
	}

	// Same sources, same bytes.
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BuildFloorInitramfs(dir); err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(first[len(first)-512:], []byte(cpio.Trailer+"\x00")) {
		t.Errorf("archive does not end with a %s record", cpio.Trailer)
	}
	if !slices.Equal(first, second) {
		t.Errorf("two builds of the floor initramfs differ")
	}
}
