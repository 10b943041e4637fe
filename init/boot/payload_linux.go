package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/services/catalog"
)

// Payload mounts the hypervisor payload (QEMU, libvirt), which an image
// with guests carries as a squashfs inside the initramfs, read-only on a
// loop device at catalog.PayloadDir, where the payload's symlinks point.
// An image without it (no guests, or the payload left unpacked) has nothing
// to mount. It needs the loop and squashfs modules, which the modules step
// loaded for a config with guests.
type Payload struct {
	Host *Host
	// Image and Dir default to catalog.PayloadImage and PayloadDir.
	Image, Dir string
}

func (Payload) String() string { return "payload" }

// Run mounts the image.
func (s Payload) Run() error {
	img, dir := s.Image, s.Dir
	if img == "" {
		img, dir = catalog.PayloadImage, catalog.PayloadDir
	}
	f, err := os.Open(img)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	dev, loop, err := attachLoop(f)
	if err != nil {
		return fmt.Errorf("payload %s: %w", img, err)
	}
	// The device clears itself on its last close unless mounted: hold it
	// open until the mount does.
	defer loop.Close()
	if err := unix.Mount(dev, dir, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("mount payload %s (%s) on %s: %w", img, dev, dir, err)
	}
	fi, _ := f.Stat()
	s.Host.Logf("payload: %s mounted on %s (%d MB)", img, dir, fi.Size()>>20)
	return nil
}

// attachLoop binds f to a free loop device, read-only, and gives the
// device's path and the device, open. The device goes away by itself once
// neither open nor mounted.
func attachLoop(f *os.File) (string, *os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("loop device control: %w", err)
	}
	defer ctl.Close()
	for range 3 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", nil, err
		}
		cfg := &unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(lf.Fd()), cfg)
		if err == nil {
			return dev, lf, nil
		}
		lf.Close()
		if !errors.Is(err, unix.EBUSY) {
			return "", nil, fmt.Errorf("configure %s: %w", dev, err)
		}
		// Another taker won the device: ask again.
	}
	return "", nil, errors.New("no free loop device")
}
