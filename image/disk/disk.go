// Package disk writes the USB/disk image: a GPT disk (go-diskfs) with one EFI
// System Partition holding systemd-boot and the UKI as a Boot Loader
// Specification Type #2 entry with an Automatic Boot Assessment counter, so an
// update can add a second (B) entry beside it. The HV-DATA partition is not in
// the image: the host creates it from the rest of the boot disk on first boot.
package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"hardvisor.dev/hardvisor/image/esp"
)

// Layout of the image. The ESP is 256 MiB: room for two UKIs (A and B) of up
// to ~120 MiB each plus systemd-boot, and a size go-diskfs formats correctly
// (64 and 129 MiB are not; see esp.ValidSize). With 512-byte sectors the image
// is the ESP plus 1 MiB in front (protective MBR, primary GPT, alignment) and
// 1 MiB behind (backup GPT), 258 MiB in all, sparse on disk.
const (
	SectorSize = 512
	// ESPStart is the ESP's offset: 1 MiB, the usual alignment.
	ESPStart = 1 * esp.MiB
	// ESPSize is the ESP's size.
	ESPSize = 256 * esp.MiB
	// Size is the whole image file's size.
	Size = ESPStart + ESPSize + 1*esp.MiB
	// ESPPartition is the ESP's GPT partition number; PID 1 adds HV-DATA as 2.
	ESPPartition = 1
	// ESPName is the ESP's GPT partition name, ESPLabel its FAT volume label.
	ESPName  = "ESP"
	ESPLabel = "HARDVISOR"
	// DataName is the GPT partition name of the data partition the host
	// creates on first boot.
	DataName = "HV-DATA"
	// Tries is the boot assessment counter a new entry starts with.
	Tries = 3
)

// Paths on the ESP.
const (
	// BootPath is the removable-media boot loader path firmware falls back to.
	BootPath = "EFI/BOOT/BOOTX64.EFI"
	// SystemdBootPath is systemd-boot's own path (bootctl's layout).
	SystemdBootPath = "EFI/systemd/systemd-bootx64.efi"
	// LoaderConfPath is systemd-boot's configuration.
	LoaderConfPath = "loader/loader.conf"
	// EntriesDir holds the Type #2 entries (UKIs).
	EntriesDir = "EFI/Linux"
)

// DefaultBootloader is systemd-boot from Debian's systemd-boot-efi package.
const DefaultBootloader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// LoaderConf is loader/loader.conf. systemd-boot sorts Type #2 entries by
// version, newest first, and entries without tries left last, so "default
// hardvisor-*" boots the newest hardvisor entry that is not known bad: after
// an update (B newer than A) it boots B while B has tries left, then falls
// back to A. timeout 0 boots at once (hold a key for the menu); the editor
// is off so the kernel command line cannot be changed at the console, and
// auto-entries off keeps other systems' loaders out of the menu.
const LoaderConf = `timeout 0
default hardvisor-*
editor no
auto-entries no
auto-firmware no
console-mode keep
`

// EntryName is the file name of the UKI entry for version with tries boot
// attempts left (UAPI Automatic Boot Assessment: "+<left>" before the
// extension; systemd-boot renames it to "+<left>-<done>" as it counts).
func EntryName(version string, tries int) string {
	return fmt.Sprintf("hardvisor-%s+%d.efi", version, tries)
}

// Inputs are what goes into the image.
type Inputs struct {
	// Version is the image version; it names the boot entry.
	Version string
	// UKI is the host path of the (signed, if signing) UKI.
	UKI string
	// Bootloader is the host path of the (signed, if signing) systemd-boot;
	// empty means DefaultBootloader.
	Bootloader string
	// Seed identifies the content (the build's input hash); the GPT GUIDs
	// and the FAT volume ID are derived from it, so equal inputs give equal
	// bytes.
	Seed string
	// Epoch is the time stamped on the ESP's files.
	Epoch int64
}

// Files returns the ESP's files for in.
func Files(in Inputs) []esp.File {
	boot := in.Bootloader
	if boot == "" {
		boot = DefaultBootloader
	}
	return []esp.File{
		{Path: BootPath, Source: boot},
		{Path: SystemdBootPath, Source: boot},
		{Path: LoaderConfPath, Data: []byte(LoaderConf)},
		{Path: EntriesDir + "/" + EntryName(in.Version, Tries), Source: in.UKI},
	}
}

// IDs are the image's identifiers, derived from Inputs.Seed.
type IDs struct {
	Disk, ESP string // GPT disk and ESP partition GUIDs
	VolumeID  uint32 // the ESP's FAT volume ID
}

// DeriveIDs derives the GUIDs and the volume ID from seed (RFC 9562 version 8
// UUIDs: SHA-256 of a purpose and the seed, with the version and variant bits
// set).
func DeriveIDs(seed string) IDs {
	h := func(what string) [32]byte { return sha256.Sum256([]byte("hardvisor " + what + "\x00" + seed)) }
	guid := func(what string) string {
		b := h(what)
		b[6] = b[6]&0x0f | 0x80
		b[8] = b[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	}
	v := h("fat volume id")
	return IDs{Disk: guid("gpt disk"), ESP: guid("gpt esp"), VolumeID: binary.LittleEndian.Uint32(v[:4])}
}

// Write writes the image to path (replacing it). The file is sparse: only the
// GPT, the FATs and the files take space.
func Write(path string, in Inputs) error {
	files := Files(in)
	need, err := esp.ContentSize(files)
	if err != nil {
		return err
	}
	if need > ESPSize-8*esp.MiB {
		return fmt.Errorf("disk image: %d MiB of files do not fit the %d MiB ESP", need/esp.MiB, ESPSize/esp.MiB)
	}
	ids := DeriveIDs(in.Seed)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	d, err := diskfs.Create(path, Size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	table := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		ProtectiveMBR:      true,
		GUID:               ids.Disk,
		Partitions: []*gpt.Partition{{
			Index: ESPPartition,
			Start: ESPStart / SectorSize,
			End:   (ESPStart+ESPSize)/SectorSize - 1,
			Type:  gpt.EFISystemPartition,
			Name:  ESPName,
			GUID:  ids.ESP,
		}},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("%s: write GPT: %w", filepath.Base(path), err)
	}
	f, err := d.Backend.Sys()
	if err != nil {
		return err
	}
	if err := esp.Write(f, ESPStart, ESPSize, files, esp.Options{Label: ESPLabel, VolumeID: ids.VolumeID, Epoch: in.Epoch}); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	closed = true
	return d.Close()
}
