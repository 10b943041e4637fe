package boot

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

const mib = 1 << 20

func efiVar(attrs uint32, s string, nul bool) []byte {
	b := binary.LittleEndian.AppendUint32(nil, attrs)
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	if nul {
		b = append(b, 0, 0)
	}
	return b
}

func TestParseEFIVarString(t *testing.T) {
	const id = "6f1e6c7a-32b1-4b3e-9f5d-0c1a2b3c4d5e"
	for _, tc := range []struct {
		name string
		in   []byte
		want string
		err  bool
	}{
		{"NUL-terminated", efiVar(6, id, true), id, false},
		{"no NUL", efiVar(6, strings.ToUpper(id), false), strings.ToUpper(id), false},
		{"text after NUL ignored", append(efiVar(6, "ab", true), 'c', 0), "ab", false},
		{"empty", efiVar(6, "", false), "", false},
		{"short header", []byte{6, 0}, "", true},
		{"odd length", append(efiVar(6, "ab", false), 'c'), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEFIVarString(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseEFIVarString = %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestProbeFS(t *testing.T) {
	with := func(n int, set map[int]byte) []byte {
		b := make([]byte, n)
		for off, v := range set {
			b[off] = v
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want FSState
	}{
		{"all zero", with(probeSize, nil), FSBlank},
		{"small partition, all zero", with(4096, nil), FSBlank},
		{"ext4 magic", with(probeSize, map[int]byte{0x438: 0x53, 0x439: 0xef, 0x400: 1}), FSExt4},
		{"magic byte-swapped", with(probeSize, map[int]byte{0x438: 0xef, 0x439: 0x53}), FSUnknown},
		{"last byte set", with(probeSize, map[int]byte{probeSize - 1: 1}), FSUnknown},
		{"first byte set", with(probeSize, map[int]byte{0: 0xeb}), FSUnknown},
		{"shorter than the magic", with(0x438, map[int]byte{0x10: 1}), FSUnknown},
		{"empty", nil, FSBlank},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ProbeFS(tc.in); got != tc.want {
				t.Errorf("ProbeFS = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadProbe(t *testing.T) {
	disk := bytes.Repeat([]byte{1}, 2*probeSize)
	for _, tc := range []struct {
		size int64
		want int
	}{{2 * probeSize, probeSize}, {4096, 4096}} {
		b, err := ReadProbe(bytes.NewReader(disk), tc.size)
		if err != nil || len(b) != tc.want {
			t.Errorf("ReadProbe(size %d) = %d bytes, %v; want %d", tc.size, len(b), err, tc.want)
		}
	}
}

func TestParseBootCount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{"1\n", 1, false},
		{"0", 0, false},
		{" 42 \n", 42, false},
		{"", 0, true},
		{"-1\n", 0, true},
		{"x\n", 0, true},
		{"1 2\n", 0, true},
		{"0x10", 0, true},
	} {
		got, err := ParseBootCount([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseBootCount(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestIncrementBootCount(t *testing.T) {
	dir := t.TempDir()
	for want := 1; want <= 3; want++ {
		n, err := IncrementBootCount(dir)
		if err != nil || n != want {
			t.Fatalf("IncrementBootCount = %d, %v; want %d", n, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, BootCountFile)); string(b) != "3\n" {
		t.Errorf("%s holds %q, want %q", BootCountFile, b, "3\n")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %v, want only %s", ents, BootCountFile)
	}
	// A damaged count is an error and is left as it is.
	os.WriteFile(filepath.Join(dir, BootCountFile), []byte("garbage\n"), 0o644)
	if _, err := IncrementBootCount(dir); err == nil || !strings.Contains(err.Error(), "garbage") {
		t.Errorf("IncrementBootCount on a damaged count: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, BootCountFile)); string(b) != "garbage\n" {
		t.Errorf("damaged count rewritten to %q", b)
	}
}

// fakeSysfs writes files (path relative to dir: content) under dir.
func fakeSysfs(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestScanBlock(t *testing.T) {
	dir := fakeSysfs(t, map[string]string{
		"vda/uevent":           "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=1\n",
		"vda/size":             "1048576\n",
		"vda/ro":               "0\n",
		"vda/vda1/uevent":      "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=ESP\n",
		"vda/vda1/partition":   "1\n",
		"vda/vda1/size":        "524288\n",
		"vda/vda2/uevent":      "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=HV-DATA\n",
		"vda/vda2/partition":   "2\n",
		"vda/vda2/size":        "520192\n",
		"vda/queue/rotational": "1\n", // a subdirectory that is not a partition
		// the class directory also lists partitions; the scan skips them
		"vda1/uevent":    "DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\n",
		"vda1/partition": "1\n",
		// a CD drive without a disc, an unused loop device
		"sr0/uevent":   "DEVNAME=sr0\nDEVTYPE=disk\n",
		"sr0/size":     "0\n",
		"loop0/uevent": "DEVNAME=loop0\nDEVTYPE=disk\n",
		"loop0/size":   "0\n",
		// a write-protected stick without partitions
		"sdb/uevent": "DEVNAME=sdb\nDEVTYPE=disk\n",
		"sdb/size":   "2048\n",
		"sdb/ro":     "1\n",
		// an NVMe namespace: partitions are named with a "p"
		"nvme0n1/uevent":                 "DEVNAME=nvme0n1\nDEVTYPE=disk\n",
		"nvme0n1/size":                   "4096\n",
		"nvme0n1/nvme0n1p1/uevent":       "DEVNAME=nvme0n1p1\nDEVTYPE=partition\nPARTN=1\n",
		"nvme0n1/nvme0n1p1/partition":    "1\n",
		"nvme0n1/nvme0n1p1/size":         "2048\n",
		"nvme0n1/nvme0n1p10/uevent":      "DEVNAME=nvme0n1p10\nDEVTYPE=partition\nPARTN=10\nPARTNAME=HV-DATA\n",
		"nvme0n1/nvme0n1p10/partition":   "10\n",
		"nvme0n1/nvme0n1p10/size":        "1024\n",
		"nvme0n1/nvme0n1p2/uevent":       "DEVNAME=nvme0n1p2\nDEVTYPE=partition\nPARTN=2\n",
		"nvme0n1/nvme0n1p2/partition":    "2\n",
		"nvme0n1/nvme0n1p2/size":         "512\n",
		"nvme0n1/nvme0n1p2/holders/x/yz": "", // deeper directories are not scanned
	})
	got, err := ScanBlock(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []BlockDisk{
		{Name: "nvme0n1", Dev: "nvme0n1", Size: 4096 * 512, Partitions: []BlockPartition{
			{Name: "nvme0n1p1", Dev: "nvme0n1p1", Number: 1, Size: 2048 * 512},
			{Name: "nvme0n1p2", Dev: "nvme0n1p2", Number: 2, Size: 512 * 512},
			{Name: "nvme0n1p10", Dev: "nvme0n1p10", Number: 10, Label: "HV-DATA", Size: 1024 * 512},
		}},
		{Name: "sdb", Dev: "sdb", Size: 2048 * 512, ReadOnly: true},
		{Name: "vda", Dev: "vda", Size: 512 * mib, Partitions: []BlockPartition{
			{Name: "vda1", Dev: "vda1", Number: 1, Label: "ESP", Size: 256 * mib},
			{Name: "vda2", Dev: "vda2", Number: 2, Label: "HV-DATA", Size: 254 * mib},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ScanBlock =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseUevent(t *testing.T) {
	got, err := ParseUevent(strings.NewReader("DEVNAME=sda1\nPARTNAME=a=b\nnoequals\n\n"))
	want := map[string]string{"DEVNAME": "sda1", "PARTNAME": "a=b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseUevent = %v, %v; want %v", got, err, want)
	}
}

func TestChooseDataPartition(t *testing.T) {
	disk := func(name string, labels ...string) BlockDisk {
		d := BlockDisk{Name: name, Dev: name}
		for i, l := range labels {
			n := name + strconv.Itoa(i+1)
			d.Partitions = append(d.Partitions, BlockPartition{Name: n, Dev: n, Number: i + 1, Label: l})
		}
		return d
	}
	for _, tc := range []struct {
		name  string
		disks []BlockDisk
		boot  string
		want  string // partition device, "" for none
		err   string
	}{
		{"none, boot disk known", []BlockDisk{disk("vda", "ESP"), disk("vdb")}, "vda", "", ""},
		{"none, no boot disk", []BlockDisk{disk("vda")}, "", "", ""},
		{"on the boot disk", []BlockDisk{disk("vda", "ESP", DataLabel)}, "vda", "vda2", ""},
		{"on another disk", []BlockDisk{disk("nvme0n1", DataLabel), disk("vda", "ESP")}, "vda", "nvme0n11", ""},
		{"no boot disk, one elsewhere", []BlockDisk{disk("sda", "x", DataLabel)}, "", "sda2", ""},
		{"boot disk's wins", []BlockDisk{disk("sda", DataLabel), disk("vda", "ESP", DataLabel)}, "vda", "vda2", ""},
		{"boot disk's wins over two elsewhere", []BlockDisk{disk("sda", DataLabel), disk("sdb", DataLabel), disk("vda", "ESP", DataLabel)}, "vda", "vda2", ""},
		{"two elsewhere", []BlockDisk{disk("sda", DataLabel), disk("sdb", DataLabel), disk("vda", "ESP")}, "vda", "", "2 partitions named HV-DATA (/dev/sda1, /dev/sdb1)"},
		{"two on the boot disk", []BlockDisk{disk("vda", "ESP", DataLabel, DataLabel)}, "vda", "", "2 partitions named HV-DATA (/dev/vda2, /dev/vda3)"},
		{"label is case-sensitive", []BlockDisk{disk("vda", "ESP", "hv-data")}, "vda", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ChooseDataPartition(tc.disks, tc.boot)
			got := ""
			if c != nil {
				got = c.Part.Dev
				if !strings.HasPrefix(got, c.Disk.Name) {
					t.Errorf("partition %s paired with disk %s", got, c.Disk.Name)
				}
			}
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("ChooseDataPartition = %q, %v; want %q, error %q", got, err, tc.want, tc.err)
			}
		})
	}
}

// Fixture GUIDs.
const (
	fixtureDisk = "5D4F0B55-3C39-4C8D-8B52-9A1B6B0E1D01"
	fixtureESP  = "6F1E6C7A-32B1-4B3E-9F5D-0C1A2B3C4D5E"
	fixtureData = "0B9B7A48-1F0E-4E4B-A3C6-6A1C1E2F3A4B"
)

// writeImage writes what image/disk writes, scaled down: a GPT disk image of
// imageSize bytes with the given partitions (an ESP from 1 MiB up to espEnd
// when parts is nil), then grows the file to diskSize, as when the image is
// written to a bigger stick.
func writeImage(t *testing.T, imageSize, diskSize int64, parts []*gpt.Partition) string {
	t.Helper()
	if parts == nil {
		parts = []*gpt.Partition{{Index: 1, Start: 2048, End: uint64(imageSize-mib)/512 - 1, Type: gpt.EFISystemPartition, Name: "ESP", GUID: fixtureESP}}
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(imageSize); err != nil {
		t.Fatal(err)
	}
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, GUID: fixtureDisk, Partitions: parts}
	if err := table.Write(f, imageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	return p
}

func readTable(t *testing.T, p string) *gpt.Table {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func TestFindPartitionGUID(t *testing.T) {
	table := readTable(t, writeImage(t, 10*mib, 10*mib, nil))
	if p := FindPartitionGUID(table, strings.ToLower(fixtureESP)); p == nil || p.Index != 1 {
		t.Errorf("FindPartitionGUID(lower case ESP GUID) = %+v, want partition 1", p)
	}
	if p := FindPartitionGUID(table, fixtureDisk); p != nil {
		t.Errorf("FindPartitionGUID(disk GUID) = %+v, want none", p)
	}
	if p := FindPartitionName(table, "ESP"); p == nil || p.Index != 1 {
		t.Errorf("FindPartitionName(ESP) = %+v, want partition 1", p)
	}
}

func TestPartitionsListed(t *testing.T) {
	table := readTable(t, writeImage(t, 10*mib, 10*mib, []*gpt.Partition{
		{Index: 1, Start: 2048, End: 4095, Type: gpt.EFISystemPartition, Name: "ESP", GUID: fixtureESP},
		{Index: 3, Start: 4096, End: 8191, Type: gpt.LinuxFilesystem, Name: DataLabel, GUID: fixtureData},
	}))
	for _, tc := range []struct {
		listed []int
		want   bool
	}{{[]int{1, 3}, true}, {[]int{1}, false}, {nil, false}, {[]int{1, 2}, false}} {
		d := &BlockDisk{Name: "sda"}
		for _, n := range tc.listed {
			d.Partitions = append(d.Partitions, BlockPartition{Number: n})
		}
		if got := PartitionsListed(table, d); got != tc.want {
			t.Errorf("PartitionsListed(sysfs lists %v) = %v, want %v", tc.listed, got, tc.want)
		}
	}
}

func TestPlanDataPartition(t *testing.T) {
	type want struct {
		index      int
		start, end uint64
		wipe       []Extent
	}
	const last128 = 128*mib/512 - 34 // last usable sector of a 128 MiB disk
	for _, tc := range []struct {
		name                string
		imageSize, diskSize int64
		parts               []*gpt.Partition
		want                want
		err                 string
	}{
		{
			// The real layout scaled down: the ESP ends 1 MiB before the
			// image does, so the old backup GPT lies in the first MiB.
			name: "image grown", imageSize: 10 * mib, diskSize: 128 * mib,
			want: want{2, 9 * mib / 512, last128, []Extent{{9 * mib, mib}}},
		},
		{
			name: "old backup past the first MiB", imageSize: 10 * mib, diskSize: 128 * mib,
			parts: []*gpt.Partition{{Index: 1, Start: 2048, End: 5*mib/512 - 1, Type: gpt.EFISystemPartition, Name: "ESP", GUID: fixtureESP}},
			want:  want{2, 5 * mib / 512, last128, []Extent{{5 * mib, mib}, {10*mib - 512 - 16<<10, 16<<10 + 512}}},
		},
		{
			name: "start aligned up, first free index", imageSize: 10 * mib, diskSize: 128 * mib,
			parts: []*gpt.Partition{
				{Index: 1, Start: 2048, End: 4095, Type: gpt.EFISystemPartition, Name: "ESP", GUID: fixtureESP},
				{Index: 3, Start: 4096, End: 9000, Type: gpt.LinuxFilesystem, Name: "other", GUID: fixtureDisk},
			},
			want: want{2, 5 * mib / 512, last128, []Extent{{5 * mib, mib}, {10*mib - 512 - 16<<10, 16<<10 + 512}}},
		},
		{name: "not grown", imageSize: 10 * mib, diskSize: 10 * mib, err: "no room for the data partition: 0 MiB free after the last partition, HV-DATA needs at least 64 MiB"},
		{name: "too small", imageSize: 10 * mib, diskSize: 70 * mib, err: "60 MiB free after the last partition"},
		{name: "size not whole sectors", imageSize: 10 * mib, diskSize: 128*mib + 100, err: "not a multiple of the sector size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := readTable(t, writeImage(t, tc.imageSize, tc.diskSize, tc.parts))
			p, wipe, err := PlanDataPartition(table, tc.diskSize, strings.ToLower(fixtureData))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PlanDataPartition: %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantP := &gpt.Partition{Index: tc.want.index, Start: tc.want.start, End: tc.want.end,
				Size: (tc.want.end - tc.want.start + 1) * 512, Type: gpt.LinuxFilesystem, Name: DataLabel, GUID: fixtureData}
			if !reflect.DeepEqual(p, wantP) {
				t.Errorf("partition = %+v\nwant        %+v", p, wantP)
			}
			if !reflect.DeepEqual(wipe, tc.want.wipe) {
				t.Errorf("wipe = %v, want %v", wipe, tc.want.wipe)
			}
			if got := table.LastDataSector(); got != last128 {
				t.Errorf("last usable sector = %d, want %d (backup GPT at the disk's end)", got, last128)
			}
			if last := table.Partitions[len(table.Partitions)-1]; last != p {
				t.Errorf("partition not added to the table")
			}
		})
	}
}

func TestMkfsArgv(t *testing.T) {
	got := MkfsArgv("/usr/sbin/mke2fs", "/dev/vda2")
	want := []string{"/usr/sbin/mke2fs", "-t", "ext4", "-T", "default", "-F", "-q", "-L", "HV-DATA", "-E", "root_owner=0:0", "/dev/vda2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MkfsArgv =\n%q\nwant\n%q", got, want)
	}
}

// TestAddDataPartition writes the data partition into a grown image file
// whose free space holds old data, and checks the result with go-diskfs and
// with gdisk's and util-linux's verifiers.
func TestAddDataPartition(t *testing.T) {
	const imageSize, diskSize = 10 * mib, 128 * mib
	img := writeImage(t, imageSize, diskSize, nil)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A used stick: old data where the partition will start.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xaa}, 2*mib), imageSize+mib); err != nil {
		t.Fatal(err)
	}
	before := readTable(t, img)
	p, err := AddDataPartition(f, diskSize, 512, 512, fixtureData)
	if err != nil {
		t.Fatal(err)
	}
	if p.Index != 2 || p.Start != 9*mib/512 || p.End != diskSize/512-34 {
		t.Errorf("partition %d at %d-%d, want 2 at %d-%d", p.Index, p.Start, p.End, 9*mib/512, diskSize/512-34)
	}
	after := readTable(t, img)
	if err := after.Verify(f, diskSize); err != nil {
		t.Errorf("backup GPT not at the disk's end: %v", err)
	}
	if after.GUID != before.GUID || !reflect.DeepEqual(after.Partitions[0], before.Partitions[0]) {
		t.Errorf("disk GUID or ESP changed:\n%+v %+v\n%+v %+v", before.GUID, before.Partitions[0], after.GUID, after.Partitions[0])
	}
	if got := FindPartitionName(after, DataLabel); got == nil || got.GUID != fixtureData || got.Index != 2 {
		t.Errorf("HV-DATA as read back: %+v", got)
	}
	probe, err := ReadProbe(io.NewSectionReader(f, int64(p.Start)*512, int64(p.Size)), int64(p.Size))
	if err != nil || ProbeFS(probe) != FSBlank {
		t.Errorf("new partition's start is %v (%v), want blank", ProbeFS(probe), err)
	}
	if _, err := AddDataPartition(f, diskSize, 512, 512, fixtureData); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Errorf("second AddDataPartition: %v, want an error", err)
	}
	verifyWithTools(t, img, diskSize, fixtureData)

	// Without a GUID given, the partition's is derived from the disk's.
	img2 := writeImage(t, imageSize, diskSize, nil)
	f2, err := os.OpenFile(img2, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	p2, err := AddDataPartition(f2, diskSize, 512, 512, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := DataPartitionGUID(before.GUID); p2.GUID != want || want == DataPartitionGUID(fixtureData) {
		t.Errorf("derived GUID %s, want %s (and unique per disk)", p2.GUID, want)
	}
}

// TestAddDataPartitionHuge adds the data partition on a (sparse) 3 TiB disk:
// the protective MBR's size saturates at 0xFFFFFFFF sectors.
func TestAddDataPartitionHuge(t *testing.T) {
	const diskSize = 3 << 40
	img := writeImage(t, 10*mib, diskSize, nil)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := AddDataPartition(f, diskSize, 512, 512, fixtureData); err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if got := binary.LittleEndian.Uint32(mbr[446+12:]); got != 0xffffffff || mbr[446+4] != 0xee {
		t.Errorf("protective MBR type %#x size %#x, want 0xee 0xffffffff", mbr[446+4], got)
	}
	verifyWithTools(t, img, diskSize, fixtureData)
}

// verifyWithTools runs `sgdisk -v` and `sfdisk --verify` (packages gdisk and
// fdisk) on img when they are installed, and checks partition 2's name, end
// and (unless empty) unique GUID with `sgdisk -i 2`.
func verifyWithTools(t *testing.T, img string, diskSize int64, guid string) {
	t.Helper()
	run := func(argv ...string) string {
		if _, err := exec.LookPath(argv[0]); err != nil {
			t.Logf("%s not installed (apt-get install gdisk fdisk): not verified with it", argv[0])
			return ""
		}
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v\n%s", argv, err, out)
		}
		return string(out)
	}
	if out := run("sgdisk", "-v", img); out != "" && !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	if out := run("sgdisk", "-i", "2", img); out != "" {
		want := []string{"Partition name: 'HV-DATA'", "Last sector: " + strconv.FormatInt(diskSize/512-34, 10) + " "}
		if guid != "" {
			want = append(want, "Partition unique GUID: "+guid)
		}
		for _, want := range want {
			if !strings.Contains(out, want) {
				t.Errorf("sgdisk -i 2 lacks %q:\n%s", want, out)
			}
		}
	}
	if out := run("sfdisk", "--verify", img); out != "" && !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify:\n%s", out)
	}
}
