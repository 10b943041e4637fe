package boot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"

	"hardvisor.dev/hardvisor/config"
)

// ErrNoRoom is returned when the boot disk has no space for HV-DATA: the image
// was booted at its built size (a VM disk that was not grown). The host then
// runs without persistent state rather than not at all.
var ErrNoRoom = errors.New("no room for the data partition")

// The data partition: persistent state (guest disks, host keys, audit log,
// update state) on an ext4 file system in the GPT partition named DataLabel.
// PID 1 creates it on the boot disk on first boot and never touches it again
// but to mount it.
const (
	// DataLabel is the data partition's GPT name and its file system label.
	DataLabel = "HV-DATA"
	// DataMountPoint is where the data partition is mounted.
	DataMountPoint = config.DataDir
	// BootCountFile, in DataMountPoint, counts the boots that mounted it.
	BootCountFile = "boot-count"
	// MinDataSize is the smallest data partition PID 1 creates.
	MinDataSize = 64 << 20
	// LoaderDevicePartUUIDVar is the EFI variable (in efivarfs) in which
	// systemd-boot and systemd-stub export the partition GUID of the ESP the
	// firmware loaded them from (Boot Loader Interface).
	LoaderDevicePartUUIDVar = "LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
)

// dataAlign aligns the start of a new data partition (and the size of the
// region zeroed in front of it): 1 MiB, what partitioning tools use.
const dataAlign = 1 << 20

// probeSize is how much of a partition ProbeFS looks at.
const probeSize = 64 << 10

// ParseEFIVarString decodes an efivarfs file holding a string variable: a
// 4-byte attribute word, then UTF-16LE text, usually NUL-terminated.
func ParseEFIVarString(b []byte) (string, error) {
	if len(b) < 4 || len(b)%2 != 0 {
		return "", fmt.Errorf("EFI string variable of %d bytes: want a 4-byte header and UTF-16", len(b))
	}
	u := make([]uint16, 0, (len(b)-4)/2)
	for i := 4; i < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

// FSState is what ProbeFS finds at the start of a partition.
type FSState int

// File system states.
const (
	// FSBlank: the first 64 KiB are all zero; PID 1 may format it.
	FSBlank FSState = iota
	// FSExt4: an ext2/3/4 superblock magic is at 0x438.
	FSExt4
	// FSUnknown: something else; PID 1 never formats it.
	FSUnknown
)

func (s FSState) String() string {
	switch s {
	case FSBlank:
		return "blank"
	case FSExt4:
		return "ext4"
	case FSUnknown:
		return "unknown data"
	}
	return "FSState(" + strconv.Itoa(int(s)) + ")"
}

// ProbeFS classifies the first 64 KiB of a partition (less when the
// partition is smaller). Only FSBlank may be formatted: a partition that
// holds anything is never overwritten.
func ProbeFS(b []byte) FSState {
	if len(b) >= 0x43a && binary.LittleEndian.Uint16(b[0x438:]) == 0xef53 {
		return FSExt4
	}
	for _, c := range b {
		if c != 0 {
			return FSUnknown
		}
	}
	return FSBlank
}

// ReadProbe reads what ProbeFS looks at from r, a partition of size bytes.
func ReadProbe(r io.ReaderAt, size int64) ([]byte, error) {
	b := make([]byte, min(size, probeSize))
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// ParseBootCount parses the boot-count file: a decimal count and a newline.
func ParseBootCount(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("boot count %q is not a non-negative number", s)
	}
	return n, nil
}

// IncrementBootCount adds one to the count in dir/BootCountFile (missing
// counts as 0) and returns the new count. The file is replaced atomically
// and durably: written to a temporary file, synced, renamed over, and the
// directory synced.
func IncrementBootCount(dir string) (int, error) {
	p := filepath.Join(dir, BootCountFile)
	n := 0
	switch b, err := os.ReadFile(p); {
	case err == nil:
		if n, err = ParseBootCount(b); err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, err
	}
	n++
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	_, err = fmt.Fprintf(f, "%d\n", n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return 0, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", dir, err)
	}
	return n, nil
}

// BlockDisk is a whole disk as sysfs describes it.
type BlockDisk struct {
	// Name is the sysfs name ("vda", "nvme0n1"), Dev the node under /dev.
	Name, Dev string
	// Size is the size in bytes.
	Size int64
	// ReadOnly is set for write-protected media.
	ReadOnly bool
	// Partitions are the partitions the kernel knows, by number.
	Partitions []BlockPartition
}

// BlockPartition is one partition of a BlockDisk.
type BlockPartition struct {
	// Name is the sysfs name ("vda2"), Dev the node under /dev.
	Name, Dev string
	// Number is the partition number (PARTN).
	Number int
	// Label is the GPT partition name (PARTNAME), empty if none.
	Label string
	// Size is the size in bytes.
	Size int64
}

// ScanBlock lists the disks under sysClassBlock (/sys/class/block) that have
// media (size > 0), sorted by name, with their partitions. A disk's
// partitions are the subdirectories of its sysfs directory holding a
// "partition" file.
func ScanBlock(sysClassBlock string) ([]BlockDisk, error) {
	ents, err := os.ReadDir(sysClassBlock)
	if err != nil {
		return nil, err
	}
	var disks []BlockDisk
	for _, e := range ents {
		dir := filepath.Join(sysClassBlock, e.Name())
		if exists(filepath.Join(dir, "partition")) {
			continue
		}
		ev, err := readUevent(filepath.Join(dir, "uevent"))
		if err != nil || ev["DEVTYPE"] != "disk" {
			continue // gone while scanning, or not a disk
		}
		d := BlockDisk{Name: e.Name(), Dev: ev["DEVNAME"], Size: readSectors(dir), ReadOnly: readTrimmed(filepath.Join(dir, "ro")) == "1"}
		if d.Dev == "" || d.Size == 0 {
			continue
		}
		subs, _ := os.ReadDir(dir)
		for _, s := range subs {
			pdir := filepath.Join(dir, s.Name())
			if !exists(filepath.Join(pdir, "partition")) {
				continue
			}
			pev, err := readUevent(filepath.Join(pdir, "uevent"))
			if err != nil {
				continue
			}
			n, _ := strconv.Atoi(pev["PARTN"])
			d.Partitions = append(d.Partitions, BlockPartition{Name: s.Name(), Dev: pev["DEVNAME"], Number: n, Label: pev["PARTNAME"], Size: readSectors(pdir)})
		}
		sort.Slice(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// ParseUevent parses a sysfs uevent file: KEY=value lines.
func ParseUevent(r io.Reader) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

func readUevent(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseUevent(f)
}

// readSectors reads a sysfs "size" file: the size in 512-byte units
// whatever the device's sector size.
func readSectors(dir string) int64 {
	n, _ := strconv.ParseInt(readTrimmed(filepath.Join(dir, "size")), 10, 64)
	return n * 512
}

func readTrimmed(p string) string {
	b, _ := os.ReadFile(p)
	return string(bytes.TrimSpace(b))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// DataCandidate is a partition named DataLabel and the disk holding it.
type DataCandidate struct {
	Disk *BlockDisk
	Part *BlockPartition
}

// ChooseDataPartition picks the partition named DataLabel to use: the boot
// disk's (bootDisk is its Name; empty when unknown), else the only one on
// any other disk. More than one on the same footing is an error: PID 1 does
// not guess which state is the host's. It returns nil when there is none.
func ChooseDataPartition(disks []BlockDisk, bootDisk string) (*DataCandidate, error) {
	var onBoot, elsewhere []DataCandidate
	for i := range disks {
		d := &disks[i]
		for j := range d.Partitions {
			if p := &d.Partitions[j]; p.Label == DataLabel {
				if d.Name == bootDisk {
					onBoot = append(onBoot, DataCandidate{d, p})
				} else {
					elsewhere = append(elsewhere, DataCandidate{d, p})
				}
			}
		}
	}
	for _, cs := range [][]DataCandidate{onBoot, elsewhere} {
		switch len(cs) {
		case 0:
			continue
		case 1:
			return &cs[0], nil
		}
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = "/dev/" + c.Part.Dev
		}
		return nil, fmt.Errorf("%d partitions named %s (%s): remove or rename all but one", len(cs), DataLabel, strings.Join(names, ", "))
	}
	return nil, nil
}

// FindPartitionGUID returns the partition of t whose unique GUID is guid
// (any case), or nil.
func FindPartitionGUID(t *gpt.Table, guid string) *gpt.Partition {
	for _, p := range t.Partitions {
		if p.Type != gpt.Unused && strings.EqualFold(p.GUID, guid) {
			return p
		}
	}
	return nil
}

// PartitionsListed reports whether sysfs lists every partition of d's GPT t.
func PartitionsListed(t *gpt.Table, d *BlockDisk) bool {
	for _, p := range t.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		if !slices.ContainsFunc(d.Partitions, func(b BlockPartition) bool { return b.Number == p.Index }) {
			return false
		}
	}
	return true
}

// Extent is a byte range of a disk.
type Extent struct{ Off, Len int64 }

// PlanDataPartition adds the data partition to t, read from a disk of
// diskSize bytes: the backup GPT moves to the disk's real end (the image was
// written to a bigger disk) and the partition, with unique GUID guid, fills
// the space after the last partition, its start aligned to 1 MiB. It returns
// the new partition and the extents to zero before the table is written: the
// first MiB of the partition, so no old signature is mistaken for a file
// system if PID 1 stops before formatting, and the old backup GPT if the
// partition now covers it.
func PlanDataPartition(t *gpt.Table, diskSize int64, guid string) (*gpt.Partition, []Extent, error) {
	lbs := int64(t.LogicalSectorSize)
	if lbs <= 0 || diskSize%lbs != 0 {
		return nil, nil, fmt.Errorf("disk size %d is not a multiple of the sector size %d", diskSize, lbs)
	}
	if len(t.Partitions) == 0 {
		return nil, nil, errors.New("the boot disk has no partitions")
	}
	oldBackup := int64(t.TotalSize()) - lbs // byte offset of the old backup header
	t.Resize(uint64(diskSize))
	var last uint64
	used := map[int]bool{}
	for _, p := range t.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		last = max(last, p.End)
		used[p.Index] = true
	}
	align := uint64(dataAlign / lbs)
	start := (last + 1 + align - 1) / align * align
	end := t.LastDataSector()
	if end < start || int64(end-start+1)*lbs < MinDataSize {
		free := int64(0)
		if end >= start {
			free = int64(end-start+1) * lbs
		}
		return nil, nil, fmt.Errorf("%w: %d MiB free after the last partition, %s needs at least %d MiB: write the image to a bigger disk", ErrNoRoom, free>>20, DataLabel, MinDataSize>>20)
	}
	index := 1
	for used[index] {
		index++
	}
	p := &gpt.Partition{
		Index: index,
		Start: start,
		End:   end,
		Size:  (end - start + 1) * uint64(lbs),
		Type:  gpt.LinuxFilesystem,
		Name:  DataLabel,
		GUID:  strings.ToUpper(guid),
	}
	t.Partitions = append(t.Partitions, p)
	pStart, pEnd := int64(start)*lbs, int64(end+1)*lbs
	wipe := []Extent{{pStart, min(dataAlign, pEnd-pStart)}}
	// The old backup: its entry array (at most 16 KiB in front of it) and
	// the header, where they fall inside the partition past the first MiB.
	if lo, hi := max(oldBackup-16<<10, pStart+dataAlign), min(oldBackup+lbs, pEnd); lo < hi {
		wipe = append(wipe, Extent{lo, hi - lo})
	}
	return p, wipe, nil
}

// dataGUIDNamespace is the namespace of the data partitions' name-based GUIDs.
var dataGUIDNamespace = uuid.MustParse("5c1f3c56-7b2e-4d0a-9a57-68617264766d")

// DataPartitionGUID is the data partition's GUID on the disk whose GPT has
// diskGUID: a name-based UUID (RFC 9562 version 5) of the disk GUID, unique
// per disk and the same on every boot, and made without randomness, which
// early in boot can block for a second or more until the kernel's pool is
// ready.
func DataPartitionGUID(diskGUID string) string {
	return strings.ToUpper(uuid.NewSHA1(dataGUIDNamespace, []byte(strings.ToLower(diskGUID)+"/"+DataLabel)).String())
}

// AddDataPartition creates the data partition on the disk f of diskSize
// bytes (a block device or an image file) as PlanDataPartition lays it out:
// it zeroes the extents, then writes the backup and primary GPT (go-diskfs
// writes and syncs the backup first, so a crash leaves one valid table).
// An empty guid takes DataPartitionGUID of the disk's GUID.
func AddDataPartition(f backend.WritableFile, diskSize int64, logical, physical int, guid string) (*gpt.Partition, error) {
	t, err := gpt.Read(f, logical, physical)
	if err != nil {
		return nil, fmt.Errorf("read GPT: %w", err)
	}
	if guid == "" {
		guid = DataPartitionGUID(t.GUID)
	}
	if FindPartitionName(t, DataLabel) != nil {
		return nil, fmt.Errorf("the GPT already has a partition named %s", DataLabel)
	}
	p, wipe, err := PlanDataPartition(t, diskSize, guid)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, dataAlign)
	for _, e := range wipe {
		if _, err := f.WriteAt(zero[:e.Len], e.Off); err != nil {
			return nil, fmt.Errorf("zero %d bytes at %d: %w", e.Len, e.Off, err)
		}
	}
	if s, ok := f.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return nil, err
		}
	}
	if err := t.Write(f, diskSize); err != nil {
		return nil, fmt.Errorf("write GPT: %w", err)
	}
	// go-diskfs truncates the protective MBR's size to 32 bits; the UEFI
	// spec caps it at 0xFFFFFFFF for disks of 2 TiB and more.
	if sectors := diskSize/int64(logical) - 1; t.ProtectiveMBR && sectors > 0xffffffff {
		if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, 446+12); err != nil {
			return nil, fmt.Errorf("write protective MBR: %w", err)
		}
	}
	return p, nil
}

// FindPartitionName returns the partition of t named name, or nil.
func FindPartitionName(t *gpt.Table, name string) *gpt.Partition {
	for _, p := range t.Partitions {
		if p.Type != gpt.Unused && p.Name == name {
			return p
		}
	}
	return nil
}

// MkfsArgv is the command that formats dev as the data file system: ext4
// with mke2fs's default usage type whatever the size, labelled DataLabel,
// root directory owned by root. The file system UUID is random: each host's
// is its own.
func MkfsArgv(mke2fs, dev string) []string {
	return []string{mke2fs, "-t", "ext4", "-T", "default", "-F", "-q", "-L", DataLabel, "-E", "root_owner=0:0", dev}
}
