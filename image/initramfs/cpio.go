// Package initramfs serialises a rootfs.Tree as the kernel's initramfs: a newc
// cpio archive with sorted entries, fixed owners and mtimes and sequential inode
// numbers, so the same tree always gives the same bytes; then compressed.
package initramfs

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// trailer names the newc archive's last record.
const trailer = "TRAILER!!!"

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

// WriteCPIO writes every entry of t as a newc archive to w. Entries are
// owned by their UID and GID (root unless the tree says otherwise) and carry
// mtime; nothing of the build host leaks in.
func WriteCPIO(w io.Writer, t *rootfs.Tree, mtime int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &cpioWriter{w: bw, mtime: mtime}
	for _, e := range t.Entries() {
		if err := cw.entry(e); err != nil {
			return fmt.Errorf("cpio /%s: %w", e.Path, err)
		}
	}
	if err := cw.record(rootfs.Entry{Path: trailer}, 0, nil, 1); err != nil {
		return err
	}
	return bw.Flush()
}

type cpioWriter struct {
	w     *bufio.Writer
	mtime int64
	ino   uint32
	off   int64
}

func (c *cpioWriter) entry(e rootfs.Entry) error {
	mode := uint32(e.Mode.Perm())
	switch e.Kind {
	case rootfs.Dir:
		return c.record(e, modeDir|mode, nil, 2)
	case rootfs.Symlink:
		return c.record(e, modeLink|0o777, []byte(e.Target), 1)
	case rootfs.CharDev:
		return c.record(e, modeChr|mode, nil, 1)
	case rootfs.File:
		data := e.Data
		if e.Source != "" {
			b, err := os.ReadFile(e.Source)
			if err != nil {
				return err
			}
			data = b
		}
		return c.record(e, modeFile|mode, data, 1)
	}
	return fmt.Errorf("unknown entry kind %v", e.Kind)
}

// record writes one header and its data: e gives the name, owner and device
// numbers; the trailer (a zero Entry named TRAILER!!!) has inode and mtime 0.
func (c *cpioWriter) record(e rootfs.Entry, mode uint32, data []byte, nlink uint32) error {
	name := e.Path
	c.ino++
	ino, mtime := c.ino, c.mtime
	if name == trailer {
		ino, mtime = 0, 0
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, e.UID, e.GID, nlink, uint32(mtime), len(data), 0, 0, e.Major, e.Minor, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}
