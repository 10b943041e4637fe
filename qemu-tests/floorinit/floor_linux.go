package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

func run() error {
	if _, err := os.Stat("/dev/console"); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll("/dev", 0o755); err != nil {
			return fmt.Errorf("create /dev: %w", err)
		}
		if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount devtmpfs on /dev: %w", err)
		}
	}
	console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	if _, err := fmt.Fprintln(console, Marker); err != nil {
		return fmt.Errorf("write /dev/console: %w", err)
	}
	// tcdrain: power-off does not wait for the UART to send what the tty
	// layer still buffers. Not a tty (ENOTTY) means nothing to wait for.
	unix.IoctlSetInt(int(console.Fd()), unix.TCSBRK, 1)
	console.Close()
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}
