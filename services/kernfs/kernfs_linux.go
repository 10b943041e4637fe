// Package kernfs reads and writes the files of /proc, /sys and cgroupfs with
// bare system calls. os.ReadFile and os.WriteFile add a poller registration,
// an fstat and a second read to each, and under TCG with pti=on every system
// call costs about half a millisecond, which PID 1's sysctls, modalias scan
// and cgroup set-up paid at every boot.
package kernfs

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// maxRead bounds one read: a sysfs attribute is at most a page, and the
// values read from /proc/sys are far shorter.
const maxRead = 4096

// Read reads a file in one read(2).
func Read(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, maxRead)
	n, err := unix.Read(fd, b)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return b[:n], nil
}

// Write writes value to a file in one write(2), as the kernel wants a
// setting.
func Write(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// WriteRead writes value to a file and reads the file back through the
// same descriptor. A failed write is returned as werr beside what the file
// then reads (a setting already in force may refuse the write); err is a
// failure to open or read it.
func WriteRead(path, value string) (got []byte, werr, err error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		werr = &fs.PathError{Op: "write", Path: path, Err: err}
	}
	b := make([]byte, maxRead)
	n, err := unix.Pread(fd, b, 0)
	if err != nil {
		return nil, werr, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return b[:n], werr, nil
}
