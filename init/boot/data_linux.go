package boot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/image/mkfs"
	"hardvisor.dev/hardvisor/services/spawn"
)

// DataPartition finds, creates if needed, and mounts the data partition, then
// counts the boot in it. The partition is the one named DataLabel on any disk
// (the boot disk's first); without one PID 1 creates it on the boot disk, the
// disk holding the ESP the firmware booted from (systemd-boot's
// LoaderDevicePartUUID), in the space after the last partition, and formats
// it. A data partition that holds anything but ext4 is never formatted.
// Without a boot disk (direct kernel boot, network boot, an ISO) and without
// a data partition the host runs with no persistent state.
type DataPartition struct {
	Host *Host
	// Spawner runs mke2fs: PID 1's reaper, which owns every child's exit.
	Spawner spawn.Spawner
	// Sysfs is where sysfs is mounted; default "/sys".
	Sysfs string
	// Dev is where device nodes are; default "/dev".
	Dev string
	// Mke2fs is the formatter; default mkfs.Mke2fs.
	Mke2fs string
	// Target is the mount point; default DataMountPoint.
	Target string
	// BootDiskWait bounds the wait for the boot disk to appear (USB storage
	// probes its disks asynchronously); default 15s.
	BootDiskWait time.Duration
	// FormatTimeout bounds mke2fs; default 10m.
	FormatTimeout time.Duration
	// LoadFS loads the data file system's module (DataFSModule) once there
	// is a partition to mount; nil when it is built in.
	LoadFS func() error
}

// DataFSModule is the data partition's file system module, loaded only on a
// host that has a data partition to mount.
const DataFSModule = "ext4"

func (DataPartition) String() string { return "data" }

func (s DataPartition) defaults() DataPartition {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&s.Sysfs, "/sys")
	def(&s.Dev, "/dev")
	def(&s.Mke2fs, mkfs.Mke2fs)
	def(&s.Target, DataMountPoint)
	if s.BootDiskWait == 0 {
		s.BootDiskWait = 15 * time.Second
	}
	if s.FormatTimeout == 0 {
		s.FormatTimeout = 10 * time.Minute
	}
	return s
}

// Run finds or creates the data partition, mounts it and counts the boot.
func (s DataPartition) Run() error {
	s = s.defaults()
	espGUID, err := s.loaderESP()
	if err != nil {
		return err
	}
	disks, boot, err := s.waitBootDisk(espGUID)
	if err != nil {
		return err
	}
	bootName := ""
	if boot != nil {
		bootName = boot.Name
	}
	c, err := ChooseDataPartition(disks, bootName)
	if err != nil {
		return err
	}
	created := false
	if c == nil {
		if boot == nil {
			s.Host.Logf("data: no boot disk (direct kernel or network boot): no persistent state")
			return nil
		}
		if c, err = s.create(boot); errors.Is(err, ErrNoRoom) {
			s.Host.Logf("data: /dev/%s: %v; running without persistent state", boot.Dev, err)
			return nil
		} else if err != nil {
			return fmt.Errorf("create %s on /dev/%s: %w", DataLabel, boot.Dev, err)
		}
		created = true
	}
	dev := filepath.Join(s.Dev, c.Part.Dev)
	state, err := probeDevice(dev, c.Part.Size)
	if err != nil {
		return err
	}
	switch state {
	case FSBlank:
		if err := s.format(dev); err != nil {
			return err
		}
	case FSUnknown:
		return fmt.Errorf("%s holds data that is not ext4: refusing to format it (zero its first 64 KiB to have it formatted)", dev)
	}
	if err := os.MkdirAll(s.Target, 0o755); err != nil {
		return err
	}
	if s.LoadFS != nil {
		if err := s.LoadFS(); err != nil {
			return fmt.Errorf("load %s: %w", DataFSModule, err)
		}
	}
	if err := unix.Mount(dev, s.Target, "ext4", nodev|nosuid|noexec|unix.MS_NOATIME, "errors=remount-ro"); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, s.Target, err)
	}
	n, err := IncrementBootCount(s.Target)
	if err != nil {
		return err
	}
	s.Host.DataMounted = s.Target
	s.Host.DataBoots = n
	how := ""
	switch {
	case created:
		how = " (created, formatted)"
	case state == FSBlank:
		how = " (formatted)"
	}
	s.Host.Logf("data: %s %s %d MiB%s mounted on %s, boot %d", dev, DataLabel, c.Part.Size>>20, how, s.Target, n)
	return nil
}

// loaderESP mounts efivarfs (read-only) on a UEFI boot and returns the
// partition GUID systemd-boot recorded, or "" when there is none.
func (s DataPartition) loaderESP() (string, error) {
	efi := filepath.Join(s.Sysfs, "firmware/efi")
	if !exists(efi) {
		return "", nil
	}
	vars := filepath.Join(efi, "efivars")
	if err := unix.Mount("efivarfs", vars, "efivarfs", nodev|nosuid|noexec|unix.MS_RDONLY, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return "", fmt.Errorf("mount efivarfs on %s (is efivarfs among the feature modules?): %w", vars, err)
	}
	b, err := os.ReadFile(filepath.Join(vars, LoaderDevicePartUUIDVar))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return ParseEFIVarString(b)
}

// waitBootDisk scans the disks and returns them and the one whose GPT holds
// the partition espGUID, waiting for it to appear; with no espGUID it scans
// once and there is no boot disk.
func (s DataPartition) waitBootDisk(espGUID string) ([]BlockDisk, *BlockDisk, error) {
	deadline := time.Now().Add(s.BootDiskWait)
	checked := map[string]bool{}
	for {
		disks, err := ScanBlock(filepath.Join(s.Sysfs, "class/block"))
		if err != nil || espGUID == "" {
			return disks, nil, err
		}
		for i := range disks {
			d := &disks[i]
			if checked[d.Name] {
				continue
			}
			t, err := readGPT(filepath.Join(s.Dev, d.Dev))
			if err != nil {
				continue // not GPT, or media not ready yet: look again next round
			}
			if FindPartitionGUID(t, espGUID) == nil {
				checked[d.Name] = true
				continue
			}
			// The kernel adds a disk's partitions just after the disk:
			// until it lists them all, a data partition may be missing.
			if PartitionsListed(t, d) {
				return disks, d, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("the firmware booted from partition %s, but no disk has it after %v", espGUID, s.BootDiskWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readGPT(dev string) (*gpt.Table, error) {
	d, err := openDisk(dev, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return gpt.Read(d.File, d.logical, d.physical)
}

// blockDev is an open block device with its geometry.
type blockDev struct {
	*os.File
	logical, physical int
	size              int64
}

func openDisk(dev string, flag int) (*blockDev, error) {
	f, err := os.OpenFile(dev, flag, 0)
	if err != nil {
		return nil, err
	}
	d := &blockDev{File: f}
	fd := int(f.Fd())
	if d.logical, err = unix.IoctlGetInt(fd, unix.BLKSSZGET); err != nil {
		err = fmt.Errorf("%s: BLKSSZGET: %w", dev, err)
	} else if d.physical, err = unix.IoctlGetInt(fd, unix.BLKPBSZGET); err != nil {
		err = fmt.Errorf("%s: BLKPBSZGET: %w", dev, err)
	} else if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&d.size))); errno != 0 {
		err = fmt.Errorf("%s: BLKGETSIZE64: %w", dev, errno)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// create adds the data partition to the boot disk's GPT and tells the
// kernel about it.
func (s DataPartition) create(boot *BlockDisk) (*DataCandidate, error) {
	if boot.ReadOnly {
		return nil, errors.New("the disk is read-only")
	}
	d, err := openDisk(filepath.Join(s.Dev, boot.Dev), os.O_RDWR)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	p, err := AddDataPartition(d.File, d.size, d.logical, d.physical, "")
	if err != nil {
		return nil, err
	}
	if err := addKernelPartition(d.File, p, d.logical); err != nil {
		return nil, err
	}
	// The kernel names the partition and devtmpfs makes its node.
	part, err := s.waitPartition(boot.Name, p.Index)
	if err != nil {
		return nil, err
	}
	return &DataCandidate{Disk: boot, Part: part}, nil
}

// addKernelPartition adds p to the kernel's view of the disk (BLKPG), so the
// partition can be used without a reboot while the disk's other partitions
// may be in use; BLKRRPART (a full rescan) is the fallback.
func addKernelPartition(f *os.File, p *gpt.Partition, logical int) error {
	bp := unix.BlkpgPartition{
		Start:  int64(p.Start) * int64(logical),
		Length: int64(p.End-p.Start+1) * int64(logical),
		Pno:    int32(p.Index),
	}
	copy(bp.Volname[:len(bp.Volname)-1], DataLabel)
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_ADD_PARTITION, Datalen: int32(unsafe.Sizeof(bp)), Data: (*byte)(unsafe.Pointer(&bp))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if errno == 0 {
		return nil
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("tell the kernel about partition %d: BLKPG: %v; BLKRRPART: %w", p.Index, errno, err)
	}
	return nil
}

// waitPartition waits for partition n of disk to appear in sysfs and /dev.
func (s DataPartition) waitPartition(disk string, n int) (*BlockPartition, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		disks, err := ScanBlock(filepath.Join(s.Sysfs, "class/block"))
		if err != nil {
			return nil, err
		}
		for _, d := range disks {
			if d.Name != disk {
				continue
			}
			for _, p := range d.Partitions {
				if p.Number == n && exists(filepath.Join(s.Dev, p.Dev)) {
					return &p, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("partition %d of %s did not appear", n, disk)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func probeDevice(dev string, size int64) (FSState, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := ReadProbe(f, size)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dev, err)
	}
	return ProbeFS(b), nil
}

// format runs mke2fs on dev through the Spawner (PID 1 never waits for a
// child itself) and returns its output in the error if it fails.
func (s DataPartition) format(dev string) error {
	argv := MkfsArgv(s.Mke2fs, dev)
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin"}
	cmd.Dir = "/"
	exited, err := s.Spawner.Spawn(cmd)
	w.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
		io.Copy(io.Discard, r)
		out <- strings.TrimSpace(string(b))
	}()
	timer := time.NewTimer(s.FormatTimeout)
	defer timer.Stop()
	var ex spawn.Exit
	select {
	case ex = <-exited:
	case <-timer.C:
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s: killed after %v", strings.Join(argv, " "), s.FormatTimeout)
	}
	msg := <-out
	if !ex.Status.Exited() || ex.Status.ExitStatus() != 0 {
		return fmt.Errorf("%s: %s: %s", strings.Join(argv, " "), waitStatus(ex.Status), msg)
	}
	return nil
}

func waitStatus(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}
