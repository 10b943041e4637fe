package vmm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"hardvisor.dev/hardvisor/config"
)

// ErrDiskMissing is what PrepareDisk's error wraps when a guest's disk,
// which vmm made before, is gone.
var ErrDiskMissing = errors.New("disk missing")

// ErrDiskBad is what PrepareDisk's error wraps when a disk is unreadable
// or not a disk image.
var ErrDiskBad = errors.New("disk unusable")

// createdMarker records in a guest's directory that vmm made its disk, so
// a disk that disappears later is an error and not a new blank disk.
const createdMarker = "disk.created"

// PrepareDisk puts guest s's disk in place under dataDir before a start.
// The first time it is made: a copy of image (the boot image's copy of the
// config's image, config.GuestImagePath) when s has one, else a sparse
// file; either is grown to s.Disk when that is larger. Later it is checked:
// a missing disk (ErrDiskMissing) or one that cannot be read or has the
// wrong shape (ErrDiskBad) fails; one smaller than s.Disk is grown. It
// reports whether it made the disk. A guest without disk needs nothing.
func PrepareDisk(dataDir string, s config.GuestSpec, image string) (made bool, err error) {
	if !hasDisk(s) {
		return false, nil
	}
	dir := GuestDir(dataDir, s.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("guest %s: %w", s.Name, err)
	}
	path := DiskPath(dataDir, s.Name)
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, merr := os.Stat(filepath.Join(dir, createdMarker)); merr == nil {
			return false, fmt.Errorf("guest %s: %w: %s was made before and is gone; not making a blank one over lost data (restore it, or remove %s to start over)",
				s.Name, ErrDiskMissing, path, filepath.Join(dir, createdMarker))
		}
		if err := makeDisk(path, s, image); err != nil {
			return false, fmt.Errorf("guest %s: make disk: %w", s.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, createdMarker), nil, 0o644); err != nil {
			return true, fmt.Errorf("guest %s: %w", s.Name, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("guest %s: %w: %v", s.Name, ErrDiskBad, err)
	case !st.Mode().IsRegular():
		return false, fmt.Errorf("guest %s: %w: %s is not a regular file", s.Name, ErrDiskBad, path)
	}
	if err := checkDisk(path, st.Size(), s); err != nil {
		return false, fmt.Errorf("guest %s: %w: %s: %v", s.Name, ErrDiskBad, path, err)
	}
	if st.Size() < int64(s.Disk) {
		if err := os.Truncate(path, int64(s.Disk)); err != nil {
			return false, fmt.Errorf("guest %s: grow disk to %s: %w", s.Name, s.Disk, err)
		}
	}
	return false, nil
}

// checkDisk reads the disk's first sector: a raw image is whole sectors,
// and one made from a (BIOS-bootable) image starts with a boot sector.
func checkDisk(path string, size int64, s config.GuestSpec) error {
	if size == 0 || size%512 != 0 {
		return fmt.Errorf("size %d is not a whole number of sectors", size)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var sector [512]byte
	if _, err := io.ReadFull(f, sector[:]); err != nil {
		return fmt.Errorf("read: %v", err)
	}
	if s.Image != "" && (sector[510] != 0x55 || sector[511] != 0xaa) {
		return errors.New("no boot signature in the first sector (corrupt)")
	}
	return nil
}

// makeDisk writes the new disk next to path and renames it into place, so a
// crash leaves no half-copied disk behind.
func makeDisk(path string, s config.GuestSpec, image string) error {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = func() error {
		if s.Image != "" {
			src, err := os.Open(image)
			if err != nil {
				return fmt.Errorf("image: %w", err)
			}
			defer src.Close()
			if _, err := io.Copy(f, src); err != nil {
				return fmt.Errorf("copy %s: %w", image, err)
			}
		}
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() < int64(s.Disk) {
			if err := f.Truncate(int64(s.Disk)); err != nil {
				return err
			}
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
