// Package mkfs is what the image carries to make the host's data file system:
// Debian's mke2fs (e2fsprogs), which PID 1 runs on first boot to format the
// HV-DATA partition as ext4, with its libraries and configuration.
package mkfs

import "hardvisor.dev/hardvisor/image/closure"

// Paths on the build host and, at the same place, in the image.
const (
	// Mke2fs is the formatter PID 1 runs.
	Mke2fs = "/usr/sbin/mke2fs"
	// Conf is mke2fs's configuration; without it mke2fs falls back to
	// compiled-in defaults that can differ from the host's.
	Conf = "/etc/mke2fs.conf"
)

// Spec is the closure of mke2fs: the binary, its loader and libraries
// (libext2fs, libcom_err, libblkid, libuuid, libe2p, libc) and Conf.
func Spec() closure.Spec {
	return closure.Spec{Binaries: []string{Mke2fs}, Extra: []string{Conf}}
}
