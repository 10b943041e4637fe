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
	if err := cw.record("TRAILER!!!", 0, nil, 0, 0, 1); err != nil {
		return err
	}
	return bw.Flush()
}

type cpioWriter struct {
	w     *bufio.Writer
	mtime int64
	ino   uint32
	off   int64
	// uid and gid own the record being written.
	uid, gid uint32
}

func (c *cpioWriter) entry(e rootfs.Entry) error {
	mode := uint32(e.Mode.Perm())
	c.uid, c.gid = e.UID, e.GID
	switch e.Kind {
	case rootfs.Dir:
		return c.record(e.Path, modeDir|mode, nil, 0, 0, 2)
	case rootfs.Symlink:
		return c.record(e.Path, modeLink|0o777, []byte(e.Target), 0, 0, 1)
	case rootfs.CharDev:
		return c.record(e.Path, modeChr|mode, nil, e.Major, e.Minor, 1)
	case rootfs.File:
		data := e.Data
		if e.Source != "" {
			b, err := os.ReadFile(e.Source)
			if err != nil {
				return err
			}
			data = b
		}
		return c.record(e.Path, modeFile|mode, data, 0, 0, 1)
	}
	return fmt.Errorf("unknown entry kind %v", e.Kind)
}

func (c *cpioWriter) record(name string, mode uint32, data []byte, rmaj, rmin, nlink uint32) error {
	c.ino++
	ino := c.ino
	if name == "TRAILER!!!" {
		ino = 0
	}
	mtime := c.mtime
	uid, gid := c.uid, c.gid
	if name == "TRAILER!!!" {
		mtime, uid, gid = 0, 0, 0
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, uid, gid, nlink, uint32(mtime), len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
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
