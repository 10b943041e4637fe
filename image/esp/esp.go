// Package esp writes the FAT32 file systems that UEFI firmware boots from: the
// EFI System Partition of the disk image and the El Torito boot image of the
// ISO. The file system is made with go-diskfs and then normalized (see
// normalize.go) so the same files always give the same bytes and pass
// `fsck.vfat -n`.
package esp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// MiB is a mebibyte.
const MiB = 1 << 20

const sectorSize = 512

// File is one file to put on the file system.
type File struct {
	// Path inside the file system, slash-separated, e.g. "EFI/BOOT/BOOTX64.EFI".
	Path string
	// Source is a host file to copy; when empty, Data is the content.
	Source string
	Data   []byte
}

// Options are the file system's identity.
type Options struct {
	// Label is the volume label (up to 11 characters).
	Label string
	// VolumeID is the FAT volume serial number (the "UUID" Linux shows).
	VolumeID uint32
	// Epoch is the time stamped on every directory entry (SOURCE_DATE_EPOCH),
	// clamped to the FAT range 1980..2107.
	Epoch int64
}

// diskfsMu serializes go-diskfs: its FAT code reads SOURCE_DATE_EPOCH and the
// clock for every entry it creates; normalize overwrites those stamps, but one
// file system at a time keeps the library's shared state out of the question.
var diskfsMu sync.Mutex

// Write makes a FAT32 file system of size bytes at offset start of f and
// copies files onto it, creating parent directories. size must be one that
// ValidSize accepts.
func Write(f *os.File, start, size int64, files []File, opts Options) error {
	if err := ValidSize(size); err != nil {
		return err
	}
	if len(opts.Label) > 11 {
		return fmt.Errorf("FAT label %q longer than 11 characters", opts.Label)
	}
	files = append([]File(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })

	diskfsMu.Lock()
	defer diskfsMu.Unlock()
	fs, err := fat32.Create(file.New(f, false), size, start, sectorSize, opts.Label, true)
	if err != nil {
		return fmt.Errorf("make FAT32: %w", err)
	}
	made := map[string]bool{}
	// One write buffer for all files: go-diskfs rewrites the whole FAT on
	// every Write call, so large writes are what keeps this fast.
	buf := make([]byte, 8*MiB)
	for _, fl := range files {
		p := strings.Trim(fl.Path, "/")
		if p == "" || strings.Contains(p, "..") {
			return fmt.Errorf("FAT path %q", fl.Path)
		}
		if err := mkdirAll(fs, path.Dir(p), made); err != nil {
			return err
		}
		if err := writeFile(fs, "/"+p, fl, buf); err != nil {
			return fmt.Errorf("write %s to FAT: %w", p, err)
		}
	}
	return normalize(f, start, opts)
}

func mkdirAll(fs *fat32.FileSystem, dir string, made map[string]bool) error {
	if dir == "." || dir == "/" || dir == "" || made[dir] {
		return nil
	}
	if err := mkdirAll(fs, path.Dir(dir), made); err != nil {
		return err
	}
	if err := fs.Mkdir("/" + dir); err != nil {
		return fmt.Errorf("FAT mkdir %s: %w", dir, err)
	}
	made[dir] = true
	return nil
}

func writeFile(fs *fat32.FileSystem, p string, fl File, buf []byte) error {
	out, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return err
	}
	var src io.Reader
	if fl.Source != "" {
		in, err := os.Open(fl.Source)
		if err != nil {
			return err
		}
		defer in.Close()
		src = in
	} else {
		src = strings.NewReader(string(fl.Data))
	}
	// The wrappers hide ReadFrom/WriteTo so CopyBuffer uses buf, not 32 KiB.
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{src}, buf); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ContentSize is the number of bytes files will occupy, counting each file
// and directory rounded up to whole clusters, for sizing a file system.
func ContentSize(files []File) (int64, error) {
	var n int64
	dirs := map[string]bool{}
	for _, fl := range files {
		size := int64(len(fl.Data))
		if fl.Source != "" {
			st, err := os.Stat(fl.Source)
			if err != nil {
				return 0, err
			}
			size = st.Size()
		}
		n += (size + 4095) &^ 4095
		for d := path.Dir(strings.Trim(fl.Path, "/")); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			n += 4096
		}
	}
	return n, nil
}

// SizeFor returns the smallest valid FAT32 size, in whole MiB and at least
// min bytes, that holds content bytes with room for the FATs and slack.
func SizeFor(content, min int64) int64 {
	size := (content + content/16 + 4*MiB + MiB - 1) / MiB * MiB
	if size < min {
		size = min
	}
	for ValidSize(size) != nil {
		size += MiB
	}
	return size
}

// ErrSize is returned for a file system size go-diskfs cannot format.
var ErrSize = errors.New("unusable FAT32 size")

// ValidSize reports whether go-diskfs v1.9.4 formats a FAT32 file system of
// size bytes correctly. Its closed-form sectors-per-FAT computation comes out
// one sector short at some sizes (64, 129, 194, 259 MiB ...): the FAT then
// cannot map every cluster and fsck.vfat and mtools reject the file system.
// This repeats that computation and checks the result; it also requires the
// 65525 clusters below which firmware reads a FAT as FAT16.
func ValidSize(size int64) error {
	if size%sectorSize != 0 {
		return fmt.Errorf("%w: %d is not a multiple of %d", ErrSize, size, sectorSize)
	}
	clusterBytes := clusterBytesFor(size)
	spc := uint32(clusterBytes / sectorSize)
	total := uint32(size / sectorSize)
	const reserved = 32
	if total <= reserved {
		return fmt.Errorf("%w: %d bytes", ErrSize, size)
	}
	denom := uint32(sectorSize)*spc + 8
	spf := (4*(total-reserved) + denom - 1) / denom
	data := int64(total) - reserved - 2*int64(spf)
	clusters := data / int64(spc)
	if int64(spf)*(sectorSize/4) < clusters+2 {
		return fmt.Errorf("%w: %d MiB (go-diskfs sizes its FAT one sector short there)", ErrSize, size/MiB)
	}
	if clusters < 65525 {
		return fmt.Errorf("%w: %d bytes gives %d clusters, FAT32 needs 65525", ErrSize, size, clusters)
	}
	return nil
}

// clusterBytesFor is go-diskfs's (and mkfs.fat's) cluster size by volume size.
func clusterBytesFor(size int64) int64 {
	const GB = 1024 * MiB
	switch {
	case size <= 260*MiB:
		return 512
	case size <= 8*GB:
		return 4096
	case size <= 16*GB:
		return 8192
	case size <= 32*GB:
		return 16384
	default:
		return 32768
	}
}
