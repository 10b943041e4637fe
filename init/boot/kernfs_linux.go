package boot

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// Files under /proc and /sys are read and written with bare system calls:
// os.ReadFile and os.WriteFile add a poller registration, an fstat and a
// second read to each, and under TCG with pti=on every system call costs
// about half a millisecond, which the 36 sysctls and the modalias scan
// paid at every boot.

// kernfsMax bounds one read: a sysfs attribute is at most a page, and the
// values PID 1 reads from /proc/sys are far shorter.
const kernfsMax = 4096

// readKernfs reads a sysfs or procfs file in one read(2).
func readKernfs(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, kernfsMax)
	n, err := unix.Read(fd, b)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return b[:n], nil
}

// writeReadKernfs writes value to a procfs or sysfs file and reads the file
// back through the same descriptor. A failed write is returned as werr
// beside what the file then reads (a setting already in force may refuse
// the write); err is a failure to open or read it.
func writeReadKernfs(path, value string) (got []byte, werr, err error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		werr = &fs.PathError{Op: "write", Path: path, Err: err}
	}
	b := make([]byte, kernfsMax)
	n, err := unix.Pread(fd, b, 0)
	if err != nil {
		return nil, werr, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return b[:n], werr, nil
}
