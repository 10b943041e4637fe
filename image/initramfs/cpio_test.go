package initramfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"

	"hardvisor.dev/hardvisor/image/rootfs"
)

func sampleTree(t *testing.T) *rootfs.Tree {
	t.Helper()
	src := filepath.Join(t.TempDir(), "hostfile")
	if err := os.WriteFile(src, []byte("from the host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := rootfs.New()
	for _, err := range []error{
		tr.AddFile("bbin/bb", src, 0o755),
		tr.AddSymlink("init", "bbin/bb"),
		tr.AddData("etc/os-release", []byte("ID=hardvisor\n"), 0o644),
		tr.AddCharDev("dev/console", 0o600, 5, 1),
		tr.AddDir("proc", 0o555),
		tr.Add(rootfs.Entry{Path: "etc/key.pem", Kind: rootfs.File, Mode: 0o440, Data: []byte("k\n"), GID: 900}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// TestWriteCPIOReadsBack checks the archive with u-root's independent cpio reader:
// every entry, in sorted order, with implied parents, root-owned unless the
// tree names an owner, at the epoch.
func TestWriteCPIOReadsBack(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCPIO(&buf, sampleTree(t), 1700000000); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(buf.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		name       string
		mode       uint64
		data       string
		rmaj, rmin uint64
		uid, gid   uint64
		mtime, ino uint64
	}
	want := []rec{
		{"bbin", 0o40755, "", 0, 0, 0, 0, 1700000000, 1},
		{"bbin/bb", 0o100755, "from the host\n", 0, 0, 0, 0, 1700000000, 2},
		{"dev", 0o40755, "", 0, 0, 0, 0, 1700000000, 3},
		{"dev/console", 0o20600, "", 5, 1, 0, 0, 1700000000, 4},
		{"etc", 0o40755, "", 0, 0, 0, 0, 1700000000, 5},
		{"etc/key.pem", 0o100440, "k\n", 0, 0, 0, 900, 1700000000, 6},
		{"etc/os-release", 0o100644, "ID=hardvisor\n", 0, 0, 0, 0, 1700000000, 7},
		{"init", 0o120777, "bbin/bb", 0, 0, 0, 0, 1700000000, 8},
		{"proc", 0o40555, "", 0, 0, 0, 0, 1700000000, 9},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d: %v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		data, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		got := rec{r.Name, r.Mode, string(data), r.Rmajor, r.Rminor, r.UID, r.GID, r.MTime, r.Ino}
		if got != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestWriteCPIODeterministic(t *testing.T) {
	tr := sampleTree(t)
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		zw, err := Compress(buf, Zstd)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteCPIO(zw, tr, 0); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two writes of the same tree differ")
	}
	dec, err := zstd.NewReader(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("070701")) || !bytes.Contains(raw, []byte("TRAILER!!!")) {
		t.Errorf("decompressed archive is not newc with a trailer")
	}
}
