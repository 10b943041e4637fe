package esp

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// fat32Geometry is what normalize needs from a FAT32 boot sector.
type fat32Geometry struct {
	bytesPerSector   int64
	sectorsPerClust  int64
	reservedSectors  int64
	numFATs          int64
	sectorsPerFAT    int64
	rootCluster      uint32
	backupBootSector int64
	fsInfoSector     int64
	totalSectors     int64
}

func (g fat32Geometry) clusterSize() int64 { return g.bytesPerSector * g.sectorsPerClust }
func (g fat32Geometry) fatStart() int64    { return g.reservedSectors * g.bytesPerSector }
func (g fat32Geometry) dataStart() int64 {
	return (g.reservedSectors + g.numFATs*g.sectorsPerFAT) * g.bytesPerSector
}
func (g fat32Geometry) clusters() uint32 {
	return uint32((g.totalSectors - g.reservedSectors - g.numFATs*g.sectorsPerFAT) / g.sectorsPerClust)
}

func parseBootSector(b []byte) (fat32Geometry, error) {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xaa {
		return fat32Geometry{}, fmt.Errorf("no FAT boot sector signature")
	}
	le := binary.LittleEndian
	g := fat32Geometry{
		bytesPerSector:   int64(le.Uint16(b[0x0b:])),
		sectorsPerClust:  int64(b[0x0d]),
		reservedSectors:  int64(le.Uint16(b[0x0e:])),
		numFATs:          int64(b[0x10]),
		totalSectors:     int64(le.Uint32(b[0x20:])),
		sectorsPerFAT:    int64(le.Uint32(b[0x24:])),
		rootCluster:      le.Uint32(b[0x2c:]),
		fsInfoSector:     int64(le.Uint16(b[0x30:])),
		backupBootSector: int64(le.Uint16(b[0x32:])),
	}
	if g.bytesPerSector == 0 || g.sectorsPerClust == 0 || g.sectorsPerFAT == 0 || g.numFATs == 0 || g.rootCluster < 2 {
		return fat32Geometry{}, fmt.Errorf("not a FAT32 boot sector")
	}
	return g, nil
}

// rw is the file system's bytes: a file and the offset the file system starts at.
type rw interface {
	io.ReaderAt
	io.WriterAt
}

// normalize fixes what go-diskfs leaves irreproducible or wrong in a FAT32 file
// system it made at start of f:
//   - every directory entry's times become opts.Epoch (go-diskfs stamps them
//     from the clock or the process's SOURCE_DATE_EPOCH, and the "." and ".."
//     entries with year 0);
//   - ".." in a directory under the root points at cluster 0, as the FAT
//     specification says (go-diskfs writes the root's cluster, which fsck.vfat
//     reports as an error);
//   - the volume ID is opts.VolumeID in the boot sector and its backup;
//   - the FSInfo free-cluster count and hint are filled in.
func normalize(f rw, start int64, opts Options) error {
	boot := make([]byte, 512)
	if _, err := f.ReadAt(boot, start); err != nil {
		return fmt.Errorf("read FAT boot sector: %w", err)
	}
	g, err := parseBootSector(boot)
	if err != nil {
		return err
	}
	fat := make([]byte, g.sectorsPerFAT*g.bytesPerSector)
	if _, err := f.ReadAt(fat, start+g.fatStart()); err != nil {
		return fmt.Errorf("read FAT: %w", err)
	}
	next := func(c uint32) uint32 {
		if int(c)*4+4 > len(fat) {
			return 0x0fffffff
		}
		return binary.LittleEndian.Uint32(fat[c*4:]) & 0x0fffffff
	}
	date, tod := fatTime(opts.Epoch)
	var walk func(first, parent uint32, depth int) error
	walk = func(first, parent uint32, depth int) error {
		if depth > 32 {
			return fmt.Errorf("FAT directories nested too deep")
		}
		var chain []uint32
		for c := first; c >= 2 && c < 0x0ffffff8; c = next(c) {
			if len(chain) > int(g.clusters()) {
				return fmt.Errorf("FAT cluster chain loops at %d", c)
			}
			chain = append(chain, c)
		}
		buf := make([]byte, int64(len(chain))*g.clusterSize())
		for i, c := range chain {
			off := start + g.dataStart() + int64(c-2)*g.clusterSize()
			if _, err := f.ReadAt(buf[int64(i)*g.clusterSize():int64(i+1)*g.clusterSize()], off); err != nil {
				return fmt.Errorf("read FAT directory: %w", err)
			}
		}
		var subdirs []uint32
		for o := 0; o+32 <= len(buf); o += 32 {
			e := buf[o : o+32]
			if e[0] == 0 {
				break
			}
			if e[0] == 0xe5 || e[11] == 0x0f {
				continue // deleted, or a long-name slot
			}
			e[0x0d] = 0
			binary.LittleEndian.PutUint16(e[0x0e:], tod)
			binary.LittleEndian.PutUint16(e[0x10:], date)
			binary.LittleEndian.PutUint16(e[0x12:], date)
			binary.LittleEndian.PutUint16(e[0x16:], tod)
			binary.LittleEndian.PutUint16(e[0x18:], date)
			name := string(e[0:11])
			switch {
			case name == "..         ":
				p := parent
				if p == g.rootCluster {
					p = 0
				}
				binary.LittleEndian.PutUint16(e[0x14:], uint16(p>>16))
				binary.LittleEndian.PutUint16(e[0x1a:], uint16(p))
			case name == ".          ":
			case e[11]&0x10 != 0 && e[11]&0x08 == 0:
				subdirs = append(subdirs, uint32(binary.LittleEndian.Uint16(e[0x14:]))<<16|uint32(binary.LittleEndian.Uint16(e[0x1a:])))
			}
		}
		for i, c := range chain {
			off := start + g.dataStart() + int64(c-2)*g.clusterSize()
			if _, err := f.WriteAt(buf[int64(i)*g.clusterSize():int64(i+1)*g.clusterSize()], off); err != nil {
				return fmt.Errorf("write FAT directory: %w", err)
			}
		}
		for _, c := range subdirs {
			if err := walk(c, first, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(g.rootCluster, 0, 0); err != nil {
		return err
	}

	binary.LittleEndian.PutUint32(boot[0x43:], opts.VolumeID)
	for _, s := range []int64{0, g.backupBootSector} {
		if _, err := f.WriteAt(boot[0x43:0x47], start+s*g.bytesPerSector+0x43); err != nil {
			return fmt.Errorf("write FAT volume ID: %w", err)
		}
	}

	free, hint := uint32(0), uint32(0xffffffff)
	for c := uint32(2); c < g.clusters()+2; c++ {
		if next(c) == 0 {
			free++
			if hint == 0xffffffff {
				hint = c
			}
		}
	}
	if g.fsInfoSector > 0 {
		info := make([]byte, 8)
		binary.LittleEndian.PutUint32(info[0:], free)
		binary.LittleEndian.PutUint32(info[4:], hint)
		for _, s := range []int64{g.fsInfoSector, g.backupBootSector + g.fsInfoSector} {
			sig := make([]byte, 4)
			if _, err := f.ReadAt(sig, start+s*g.bytesPerSector); err != nil {
				return err
			}
			if string(sig) != "RRaA" {
				continue // no FSInfo there
			}
			if _, err := f.WriteAt(info, start+s*g.bytesPerSector+0x1e8); err != nil {
				return fmt.Errorf("write FSInfo: %w", err)
			}
		}
	}
	return nil
}

// fatTime encodes epoch as a FAT date and time of day, clamped to the range
// FAT can hold (1980-01-01 to 2107-12-31).
func fatTime(epoch int64) (date, tod uint16) {
	t := time.Unix(epoch, 0).UTC()
	if min := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC); t.Before(min) {
		t = min
	}
	if max := time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC); t.After(max) {
		t = max
	}
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	tod = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, tod
}
