package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Offsets in the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst).
const (
	hdrBootFlag      = 0x1FE // 0xAA55
	hdrMagic         = 0x202 // "HdrS"
	hdrKernelVersion = 0x20E // offset of the version string, minus 0x200
	maxVersionLen    = 512
)

// ImageVersion returns the version string embedded in a bzImage, e.g.
// "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC
// Debian 6.1.192-3 (2026-11-26)". Its first word is the kernel release.
func ImageVersion(r io.ReaderAt) (string, error) {
	var hdr [hdrKernelVersion + 2]byte
	if n, err := r.ReadAt(hdr[:], 0); n < len(hdr) {
		if err == nil || errors.Is(err, io.EOF) {
			return "", errors.New("not a bzImage: shorter than a setup header")
		}
		return "", fmt.Errorf("not a bzImage: read setup header: %w", err)
	}
	if binary.LittleEndian.Uint16(hdr[hdrBootFlag:]) != 0xAA55 || string(hdr[hdrMagic:hdrMagic+4]) != "HdrS" {
		return "", errors.New("not a bzImage: no HdrS setup header")
	}
	ptr := binary.LittleEndian.Uint16(hdr[hdrKernelVersion:])
	if ptr == 0 {
		return "", errors.New("bzImage has no kernel version string")
	}
	off := int64(ptr) + 0x200
	buf := make([]byte, maxVersionLen)
	n, err := r.ReadAt(buf, off)
	if n == 0 && err != nil {
		return "", fmt.Errorf("bzImage version string at %#x: %w", off, err)
	}
	buf = buf[:n]
	end := bytes.IndexByte(buf, 0)
	if end < 0 {
		return "", fmt.Errorf("bzImage version string at %#x: no NUL within %d bytes", off, maxVersionLen)
	}
	v := string(buf[:end])
	for _, c := range []byte(v) {
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("bzImage version string at %#x: not printable text", off)
		}
	}
	if v == "" {
		return "", fmt.Errorf("bzImage version string at %#x is empty", off)
	}
	return v, nil
}
