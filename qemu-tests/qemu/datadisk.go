package qemu

import (
	"fmt"
	"os/exec"
	"strconv"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// DataDisk makes a raw disk image at path, size bytes, holding only an
// ext4 partition labelled HV-DATA: the data partition for a host booted
// without a boot disk (direct kernel boot) to keep its state on. It runs
// the build host's mke2fs.
func DataDisk(path string, size int64) error {
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		return fmt.Errorf("mke2fs missing: apt-get install e2fsprogs")
	}
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		return err
	}
	const first = 2048
	last := uint64(size/512) - 34 // the backup GPT's 33 sectors and the header
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*gpt.Partition{{Index: 1, Start: first, End: last, Type: gpt.LinuxFilesystem, Name: "HV-DATA"}}}
	err = d.Partition(table)
	d.Close()
	if err != nil {
		return fmt.Errorf("data disk %s: %w", path, err)
	}
	off := strconv.FormatInt(first*512, 10)
	blocks := strconv.FormatUint((last-first+1)*512/4096, 10)
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-L", "HV-DATA", "-b", "4096", "-E", "offset="+off, path, blocks).CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs on %s: %v: %s", path, err, out)
	}
	return nil
}
