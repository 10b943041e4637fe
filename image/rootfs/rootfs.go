// Package rootfs is the in-memory plan of the host's root file system: every file,
// directory and symlink that the build stages contribute, keyed by its path inside
// the image. The initramfs stage serialises it; the SBOM stage reads where each file
// came from.
package rootfs

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Kind says what an Entry is.
type Kind int

// The kinds of entries a Tree holds.
const (
	File Kind = iota
	Dir
	Symlink
	CharDev
)

func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case CharDev:
		return "chardev"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Entry is one node of the image's file system.
type Entry struct {
	// Path inside the image, clean and relative ("usr/lib/libc.so.6").
	Path string
	Kind Kind
	// Mode holds the permission bits (no type bits).
	Mode fs.FileMode
	// Source is the host file a File's content is read from; empty when Data is used.
	Source string
	// Data is a File's inline content when Source is empty.
	Data []byte
	// Target is a Symlink's target.
	Target string
	// Major and Minor are a CharDev's device numbers.
	Major, Minor uint32
	// UID and GID own the entry; root's (0) unless set.
	UID, GID uint32
}

// Tree is a set of entries with unique paths. The zero value is not usable; call New.
type Tree struct {
	entries map[string]Entry
}

// New returns an empty tree.
func New() *Tree { return &Tree{entries: map[string]Entry{}} }

// Clean turns an image path ("/usr/bin/x", "usr//bin/x") into the Tree's form
// ("usr/bin/x"). It rejects paths that escape the root.
func Clean(p string) (string, error) {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("image path %q escapes the root", p)
		}
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return "", fmt.Errorf("image path %q names the root", p)
	}
	return strings.TrimPrefix(c, "/"), nil
}

// AddFile adds a regular file whose content is read from the host file source.
func (t *Tree) AddFile(p, source string, mode fs.FileMode) error {
	return t.add(Entry{Path: p, Kind: File, Mode: mode.Perm(), Source: source})
}

// AddData adds a regular file with inline content.
func (t *Tree) AddData(p string, data []byte, mode fs.FileMode) error {
	return t.add(Entry{Path: p, Kind: File, Mode: mode.Perm(), Data: append([]byte(nil), data...)})
}

// AddSymlink adds a symbolic link.
func (t *Tree) AddSymlink(p, target string) error {
	return t.add(Entry{Path: p, Kind: Symlink, Mode: 0o777, Target: target})
}

// AddCharDev adds a character device node (the kernel needs /dev/console in
// the initramfs before PID 1 can mount devtmpfs).
func (t *Tree) AddCharDev(p string, mode fs.FileMode, major, minor uint32) error {
	return t.add(Entry{Path: p, Kind: CharDev, Mode: mode.Perm(), Major: major, Minor: minor})
}

// AddDir adds a directory.
func (t *Tree) AddDir(p string, mode fs.FileMode) error {
	return t.add(Entry{Path: p, Kind: Dir, Mode: mode.Perm()})
}

// Add adds e. Adding an identical entry twice is a no-op; adding a different
// entry at a path already taken is an error naming both.
func (t *Tree) Add(e Entry) error { return t.add(e) }

func (t *Tree) add(e Entry) error {
	p, err := Clean(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if old, ok := t.entries[p]; ok {
		if same(old, e) {
			return nil
		}
		return fmt.Errorf("image path /%s: %s conflicts with %s", p, describe(e), describe(old))
	}
	t.entries[p] = e
	return nil
}

func same(a, b Entry) bool {
	return a.Kind == b.Kind && a.Mode == b.Mode && a.Source == b.Source &&
		a.Target == b.Target && a.Major == b.Major && a.Minor == b.Minor && a.UID == b.UID && a.GID == b.GID &&
		bytes.Equal(a.Data, b.Data)
}

func describe(e Entry) string {
	switch {
	case e.Kind == Symlink:
		return "symlink to " + e.Target
	case e.Kind == File && e.Source != "":
		return "file from " + e.Source
	case e.Kind == File:
		return fmt.Sprintf("file of %d bytes", len(e.Data))
	}
	return e.Kind.String()
}

// Merge adds every entry of o to t.
func (t *Tree) Merge(o *Tree) error {
	for _, e := range o.entries {
		if err := t.add(e); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns the entry at image path p.
func (t *Tree) Lookup(p string) (Entry, bool) {
	c, err := Clean(p)
	if err != nil {
		return Entry{}, false
	}
	e, ok := t.entries[c]
	return e, ok
}

// Len is the number of entries added (implied parent directories not counted).
func (t *Tree) Len() int { return len(t.entries) }

// Entries returns every entry sorted by path, with each missing parent directory
// supplied as a 0755 directory, so that a writer can emit them in order.
func (t *Tree) Entries() []Entry {
	all := make(map[string]Entry, len(t.entries))
	for p, e := range t.entries {
		all[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := t.entries[d]; !ok {
				all[d] = Entry{Path: d, Kind: Dir, Mode: 0o755}
			}
		}
	}
	out := make([]Entry, 0, len(all))
	for _, e := range all {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
