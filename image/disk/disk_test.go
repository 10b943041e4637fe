package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

func TestEntryName(t *testing.T) {
	if got, want := EntryName("1.4.0", 3), "hardvisor-1.4.0+3.efi"; got != want {
		t.Errorf("EntryName = %q, want %q", got, want)
	}
}

func TestDeriveIDs(t *testing.T) {
	a, b := DeriveIDs("seed-a"), DeriveIDs("seed-b")
	if a != DeriveIDs("seed-a") {
		t.Error("DeriveIDs is not deterministic")
	}
	if a.Disk == b.Disk || a.ESP == b.ESP || a.VolumeID == b.VolumeID || a.Disk == a.ESP {
		t.Errorf("IDs collide: %+v %+v", a, b)
	}
	if a.Disk[14] != '8' || !bytes.ContainsAny([]byte{a.Disk[19]}, "89ab") || len(a.Disk) != 36 {
		t.Errorf("%s is not a version 8 RFC 9562 UUID", a.Disk)
	}
}

// TestWrite writes the image twice from the same inputs: byte-identical,
// sparse, with the GPT laid out as documented.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	uki := filepath.Join(dir, "uki.efi")
	boot := filepath.Join(dir, "boot.efi")
	os.WriteFile(uki, bytes.Repeat([]byte("UKI!"), 1<<18), 0o644)
	os.WriteFile(boot, []byte("MZ boot loader"), 0o644)
	in := Inputs{Version: "1.2.3", UKI: uki, Bootloader: boot, Seed: "key", Epoch: 1700000000}
	var imgs [][]byte
	for i := 0; i < 2; i++ {
		p := filepath.Join(dir, "img"+string(rune('0'+i)))
		if err := Write(p, in); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != Size {
			t.Errorf("image is %d bytes, want %d", len(b), Size)
		}
		imgs = append(imgs, b)
	}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Fatal("two writes of the same inputs differ")
	}
	p := filepath.Join(dir, "img0")
	if st, err := os.Stat(p); err != nil {
		t.Fatal(err)
	} else if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 16<<20 {
		t.Errorf("image uses %d bytes on disk, want it sparse (a 1 MiB UKI)", used)
	}
	d, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tab, ok := d.Table.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %T, want GPT", d.Table)
	}
	ids := DeriveIDs("key")
	if len(tab.Partitions) != 1 {
		t.Fatalf("%d partitions, want 1", len(tab.Partitions))
	}
	part := tab.Partitions[0]
	if part.Type != gpt.EFISystemPartition || part.Name != ESPName || part.GetStart() != ESPStart || part.GetSize() != ESPSize {
		t.Errorf("ESP = %+v", part)
	}
	if !equalFold(part.GUID, ids.ESP) || !equalFold(tab.GUID, ids.Disk) {
		t.Errorf("GUIDs disk %s esp %s, want %s %s", tab.GUID, part.GUID, ids.Disk, ids.ESP)
	}

	in.Version = "1.2.4"
	if err := Write(filepath.Join(dir, "other"), in); err != nil {
		t.Fatal(err)
	}
	if other, _ := os.ReadFile(filepath.Join(dir, "other")); bytes.Equal(other, imgs[0]) {
		t.Error("a different version gave the same image")
	}
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

func TestWriteTooBig(t *testing.T) {
	dir := t.TempDir()
	uki := filepath.Join(dir, "uki.efi")
	f, _ := os.Create(uki)
	f.Truncate(ESPSize)
	f.Close()
	if err := Write(filepath.Join(dir, "img"), Inputs{Version: "1", UKI: uki, Bootloader: uki}); err == nil {
		t.Error("an image with a UKI larger than the ESP was written")
	}
}
