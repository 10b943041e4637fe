// Package iso writes the ISO 9660 image for virtual media (a BMC's virtual CD):
// an El Torito boot catalog with one UEFI no-emulation entry whose boot image
// is a FAT32 file system holding the UKI as EFI/BOOT/BOOTX64.EFI. Firmware
// boots the UKI directly (no boot loader: a read-only medium has no use for
// boot counting or a second entry), with its built-in command line.
package iso

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"hardvisor.dev/hardvisor/image/esp"
)

// Names in the image.
const (
	// VolumeID is the ISO 9660 volume identifier (what a BMC shows).
	VolumeID = "HARDVISOR"
	// BootImage is the El Torito boot image's file name in the ISO.
	BootImage = "EFIBOOT.IMG"
	// BootPath is where the UKI is in the boot image.
	BootPath = "EFI/BOOT/BOOTX64.EFI"
)

const blockSize = 2048

// Inputs are what goes into the ISO.
type Inputs struct {
	// UKI is the host path of the (signed, if signing) UKI.
	UKI string
	// VolumeID is the boot image's FAT volume ID (derive it from the content).
	FATVolumeID uint32
	// Epoch is the one time stamped in the image (SOURCE_DATE_EPOCH).
	Epoch int64
}

// Write writes the ISO to path (replacing it), using tmp for the boot image.
func Write(path, tmp string, in Inputs) error {
	files := []esp.File{{Path: BootPath, Source: in.UKI}}
	need, err := esp.ContentSize(files)
	if err != nil {
		return err
	}
	// 34 MiB is about the smallest FAT32 with 512-byte clusters.
	fatSize := esp.SizeFor(need, 34*esp.MiB)

	// go-diskfs builds the ISO from a workspace directory it removes when done.
	ws, err := os.MkdirTemp(tmp, "iso-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ws)
	bootImg := filepath.Join(ws, BootImage)
	f, err := os.Create(bootImg)
	if err != nil {
		return err
	}
	if err := f.Truncate(fatSize); err != nil {
		f.Close()
		return err
	}
	if err := esp.Write(f, 0, fatSize, files, esp.Options{Label: VolumeID, VolumeID: in.FATVolumeID, Epoch: in.Epoch}); err != nil {
		f.Close()
		return fmt.Errorf("ISO boot image: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Directory records carry the workspace's modification times.
	ts := time.Unix(in.Epoch, 0)
	for _, p := range []string{bootImg, ws} {
		if err := os.Chtimes(p, ts, ts); err != nil {
			return err
		}
	}

	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	d, err := diskfs.Create(path, fatSize+4*esp.MiB, diskfs.SectorSize(blockSize))
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeISO9660, WorkDir: ws})
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	iso, ok := fs.(*iso9660.FileSystem)
	if !ok {
		return fmt.Errorf("%s: go-diskfs returned %T for ISO 9660", filepath.Base(path), fs)
	}
	err = iso.Finalize(iso9660.FinalizeOptions{
		VolumeIdentifier: VolumeID,
		ElTorito: &iso9660.ElTorito{
			// A hidden catalog has no directory record, so no time stamp.
			HideBootCatalog: true,
			Entries: []*iso9660.ElToritoEntry{{
				Platform:  iso9660.EFI,
				Emulation: iso9660.NoEmulation,
				BootFile:  "/" + BootImage,
			}},
		},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	closed = true
	if err := d.Close(); err != nil {
		return err
	}
	return fixup(path, in.Epoch)
}

// Offsets in the primary volume descriptor (ECMA-119 8.4) of its time stamps,
// and of the volume size in blocks.
const (
	pvdOffset       = 16 * blockSize
	pvdVolumeBlocks = 80
	pvdCreation     = 813
	pvdModification = 830
	pvdExpiration   = 847
	pvdEffective    = 864
)

// fixup replaces the clock times go-diskfs writes into the primary volume
// descriptor with epoch (expiration: none), and cuts the file to the volume
// size the descriptor records (the backing file was created larger).
func fixup(path string, epoch int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	pvd := make([]byte, blockSize)
	if _, err := f.ReadAt(pvd, pvdOffset); err != nil {
		return fmt.Errorf("read ISO volume descriptor: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return fmt.Errorf("%s: no ISO 9660 primary volume descriptor", path)
	}
	stamp := decDateTime(epoch)
	copy(pvd[pvdCreation:], stamp)
	copy(pvd[pvdModification:], stamp)
	copy(pvd[pvdEffective:], stamp)
	copy(pvd[pvdExpiration:], decDateTimeNone())
	if _, err := f.WriteAt(pvd, pvdOffset); err != nil {
		return err
	}
	blocks := int64(pvd[pvdVolumeBlocks]) | int64(pvd[pvdVolumeBlocks+1])<<8 | int64(pvd[pvdVolumeBlocks+2])<<16 | int64(pvd[pvdVolumeBlocks+3])<<24
	if err := f.Truncate(blocks * blockSize); err != nil {
		return err
	}
	return f.Close()
}

// decDateTime is ECMA-119's 17-byte date and time: 16 digits and the offset
// from GMT in 15-minute steps.
func decDateTime(epoch int64) []byte {
	t := time.Unix(epoch, 0).UTC()
	return append([]byte(fmt.Sprintf("%04d%02d%02d%02d%02d%02d00", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())), 0)
}

// decDateTimeNone is the "not specified" date and time.
func decDateTimeNone() []byte {
	return append([]byte("0000000000000000"), 0)
}
