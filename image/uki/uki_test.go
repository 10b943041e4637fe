package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	files := []Section{
		{Name: ".osrel", File: "/t/osrel"},
		{Name: ".cmdline", File: "/t/cmdline"},
		{Name: ".linux", File: "/t/vmlinuz"},
		{Name: ".initrd", File: "/t/initrd"},
	}
	for _, tc := range []struct {
		name    string
		stubEnd uint64
		sizes   []int64
		want    []uint64
	}{
		{
			name:    "debian stub",
			stubEnd: 0x19134,
			sizes:   []int64{0x50, 0x1000, 0x12345, 0x2000},
			// 0x19134 -> 0x1a000; +0x50 -> 0x1b000; +0x1000 = 0x1c000 (already aligned);
			// +0x12345 -> 0x2f000.
			want: []uint64{0x1a000, 0x1b000, 0x1c000, 0x2f000},
		},
		{
			name:    "aligned stub end",
			stubEnd: 0x20000,
			sizes:   []int64{1, 0, 0x1001, 7},
			// an empty section takes no page: .linux shares .cmdline's address.
			want: []uint64{0x20000, 0x21000, 0x21000, 0x23000},
		},
		{
			name:    "one byte past a page",
			stubEnd: 0x1001,
			sizes:   []int64{0xfff, 0x1000, 1, 1},
			want:    []uint64{0x2000, 0x3000, 0x4000, 0x5000},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Layout(tc.stubEnd, files, tc.sizes)
			want := make([]Section, len(files))
			for i := range files {
				want[i] = Section{Name: files[i].Name, File: files[i].File, VMA: tc.want[i]}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Layout(%#x, %v):\n got %+v\nwant %+v", tc.stubEnd, tc.sizes, got, want)
			}
		})
	}
	// Layout must not write into the caller's slice.
	if files[0].VMA != 0 {
		t.Errorf("Layout changed its input: %+v", files[0])
	}
}

func TestChecksumSmall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      []byte
		sumOff int
		want   uint32
	}{
		{"odd length", []byte{0x01, 0x02, 0x03, 0x04, 0x05}, 100, 0x0201 + 0x0403 + 0x05 + 5},
		{"end-around carry", []byte{0xff, 0xff, 0x02, 0x00}, 100, 0x0002 + 4},
		{"field skipped", []byte{0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x00}, 0, 0x0001 + 6},
		{"empty", nil, 0, 0},
	} {
		if got := checksum(tc.b, tc.sumOff); got != tc.want {
			t.Errorf("%s: checksum = %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

// refChecksum is an independent PE checksum: the file is summed as
// little-endian 32-bit words (zero-padded) with the CheckSum field zeroed,
// the carries folded down to 16 bits, and the length added. One's-complement
// sums do not depend on word width, so this must agree with the 16-bit
// algorithm of Microsoft's CheckSumMappedFile.
func refChecksum(file []byte) uint32 {
	b := append([]byte(nil), file...)
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 24 + 64
	copy(b[off:off+4], []byte{0, 0, 0, 0})
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	var sum uint64
	for i := 0; i < len(b); i += 4 {
		sum += uint64(binary.LittleEndian.Uint32(b[i:]))
	}
	for sum > 0xffff {
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return uint32(sum) + uint32(len(file))
}

func headerChecksum(b []byte) uint32 {
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 24 + 64
	return binary.LittleEndian.Uint32(b[off:])
}

func needStub(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultStub); err != nil {
		t.Skipf("%s not installed (apt-get install systemd-boot-efi)", DefaultStub)
	}
}

func needObjdump(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"objcopy", "objdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install binutils)", tool)
		}
	}
}

type objSection struct {
	name      string
	size, vma uint64
}

// objdumpSections parses `objdump -h`: "Idx Name Size VMA LMA File-off Algn".
func objdumpSections(t *testing.T, file string) []objSection {
	t.Helper()
	out, err := exec.Command("objdump", "-h", file).Output()
	if err != nil {
		t.Fatalf("objdump -h %s: %v", file, err)
	}
	var secs []objSection
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 7 {
			continue
		}
		if _, err := strconv.Atoi(f[0]); err != nil {
			continue
		}
		size, err1 := strconv.ParseUint(f[2], 16, 64)
		vma, err2 := strconv.ParseUint(f[3], 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("objdump line %q: %v %v", line, err1, err2)
		}
		secs = append(secs, objSection{f[1], size, vma})
	}
	if len(secs) == 0 {
		t.Fatalf("objdump -h %s listed no sections:\n%s", file, out)
	}
	return secs
}

func TestStubEndDebianStub(t *testing.T) {
	needStub(t)
	needObjdump(t)
	var want uint64
	for _, s := range objdumpSections(t, DefaultStub) {
		if e := s.vma + s.size; e > want {
			want = e
		}
	}
	got, err := StubEnd(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("StubEnd = %#x, objdump -h says %#x", got, want)
	}
	// Debian 12's systemd-boot-efi 252: last section .sdmagic at 0x19100, 0x34 bytes.
	if got != 0x19134 {
		t.Logf("StubEnd = %#x (not Debian 12's 0x19134: a different stub build)", got)
	}
}

func TestStubEndErrors(t *testing.T) {
	dir := t.TempDir()
	notPE := filepath.Join(dir, "notpe")
	if err := os.WriteFile(notPE, []byte("hello, not a PE file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := StubEnd(notPE); err == nil || !strings.HasPrefix(err.Error(), "read EFI stub "+notPE+": ") {
		t.Errorf("StubEnd(not a PE) = %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := StubEnd(missing); err == nil || !strings.HasPrefix(err.Error(), "read EFI stub "+missing+": ") {
		t.Errorf("StubEnd(missing) = %v", err)
	}
}

// TestChecksumDebianStub checks checksum against the value the stub's own
// linker wrote.
func TestChecksumDebianStub(t *testing.T) {
	needStub(t)
	b, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	stored := headerChecksum(b)
	if stored == 0 {
		t.Skip("stub carries no checksum")
	}
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 24 + 64
	if got := checksum(b, off); got != stored {
		t.Errorf("checksum(stub) = %#x, header says %#x", got, stored)
	}
	if got := refChecksum(b); got != stored {
		t.Errorf("refChecksum(stub) = %#x, header says %#x (test's reference is wrong)", got, stored)
	}
}

const epoch = 1700000000

func buildUKI(t *testing.T, dir string) (string, Inputs) {
	t.Helper()
	kernel := filepath.Join(dir, "vmlinuz")
	initrd := filepath.Join(dir, "initrd")
	// Sizes chosen to cross page boundaries; odd total lengths exercise the checksum tail.
	if err := os.WriteFile(kernel, bytes.Repeat([]byte("KERNEL!"), 1500), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, bytes.Repeat([]byte{0x07, 0x70, 0x01}, 2001), 0o644); err != nil {
		t.Fatal(err)
	}
	in := Inputs{
		Stub:      DefaultStub,
		Kernel:    kernel,
		Initramfs: initrd,
		Cmdline:   "console=ttyS0 lockdown=integrity",
		OSRelease: []byte("ID=hardvisor\nVERSION_ID=1\n"),
		Epoch:     epoch,
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hardvisor.efi")
	if err := Build(in, out, tmp); err != nil {
		t.Fatal(err)
	}
	return out, in
}

func TestBuild(t *testing.T) {
	needStub(t)
	needObjdump(t)
	out, in := buildUKI(t, t.TempDir())
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}

	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("result is not a PE file: %v", err)
	}
	if f.FileHeader.TimeDateStamp != epoch {
		t.Errorf("TimeDateStamp = %d, want %d", f.FileHeader.TimeDateStamp, epoch)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		t.Fatalf("optional header %T, want PE32+", f.OptionalHeader)
	}
	want := refChecksum(b)
	if oh.CheckSum != want || headerChecksum(b) != want {
		t.Errorf("CheckSum = %#x, independent computation %#x", oh.CheckSum, want)
	}
	f.Close()

	// The added sections sit exactly where Layout put them, with their contents.
	end, err := StubEnd(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	contents := [][]byte{in.OSRelease, []byte(in.Cmdline), nil, nil}
	for i, p := range []string{in.Kernel, in.Initramfs} {
		if contents[2+i], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	files := []Section{{Name: ".osrel"}, {Name: ".cmdline"}, {Name: ".linux"}, {Name: ".initrd"}}
	sizes := make([]int64, len(contents))
	for i, c := range contents {
		sizes[i] = int64(len(c))
	}
	layout := Layout(end, files, sizes)

	secs := objdumpSections(t, out)
	stub := objdumpSections(t, DefaultStub)
	if len(secs) != len(stub)+4 {
		t.Fatalf("result has %d sections, want the stub's %d + 4: %+v", len(secs), len(stub), secs)
	}
	if !reflect.DeepEqual(secs[:len(stub)], stub) {
		t.Errorf("stub sections changed:\n got %+v\nwant %+v", secs[:len(stub)], stub)
	}
	var wantAdded []objSection
	for i, s := range layout {
		wantAdded = append(wantAdded, objSection{s.Name, uint64(sizes[i]), s.VMA})
	}
	if got := secs[len(stub):]; !reflect.DeepEqual(got, wantAdded) {
		t.Errorf("added sections per objdump -h:\n got %+v\nwant %+v", got, wantAdded)
	}

	f, err = pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, s := range layout {
		sec := f.Section(s.Name)
		if sec == nil {
			t.Errorf("no section %s", s.Name)
			continue
		}
		data, err := sec.Data()
		if err != nil {
			t.Fatal(err)
		}
		// Raw data is padded to the file alignment.
		if len(data) < len(contents[i]) || !bytes.Equal(data[:len(contents[i])], contents[i]) {
			t.Errorf("section %s content differs from its input (%d bytes, want prefix of %d)", s.Name, len(data), len(contents[i]))
		}
	}
}

func TestBuildReproducible(t *testing.T) {
	needStub(t)
	needObjdump(t)
	a, _ := buildUKI(t, t.TempDir())
	b, _ := buildUKI(t, t.TempDir())
	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, bb) {
		t.Errorf("two builds differ (%d and %d bytes)", len(ab), len(bb))
	}
}

func TestBuildMissingStub(t *testing.T) {
	dir := t.TempDir()
	stub := filepath.Join(dir, "linuxx64.efi.stub")
	err := Build(Inputs{Stub: stub}, filepath.Join(dir, "out.efi"), dir)
	want := "EFI stub " + stub + " missing: apt-get install systemd-boot-efi: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Build with a missing stub = %v, want prefix %q", err, want)
	}
}

func TestNormalizeHeaderErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("MZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := normalizeHeader(short, 1); err == nil || err.Error() != short+": too short for a PE file" {
		t.Errorf("normalizeHeader(short) = %v", err)
	}
	noPE := filepath.Join(dir, "nope")
	if err := os.WriteFile(noPE, make([]byte, 0x200), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := normalizeHeader(noPE, 1); err == nil || err.Error() != noPE+": no PE header" {
		t.Errorf("normalizeHeader(no PE) = %v", err)
	}
}
