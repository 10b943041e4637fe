// Package sbom writes the image's software bill of materials: an SPDX 2.3
// document that lists every regular file of the image with its checksums and
// the Debian package (and version) it came from, so that a vulnerability
// scanner or an auditor can tell exactly what a host runs.
package sbom

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"hardvisor.dev/hardvisor/image/sbom/dpkg"
)

// Package is an installed Debian package.
type Package = dpkg.Package

// Dpkg maps host paths to the installed Debian packages that own them.
type Dpkg struct {
	pkgs   []Package
	owners map[string]int32 // canonical path -> index in pkgs
	// aliases maps top-level directory symlinks ("/lib") to their targets
	// ("/usr/lib"): on a merged-/usr host dpkg still lists many files under
	// /lib while they live under /usr/lib, and callers may ask either way.
	aliases map[string]string
	// root is stripped from paths asked about; "/" outside tests.
	root string
}

// LoadDpkg reads the dpkg database in dir (normally /var/lib/dpkg): the
// installed packages from its status file and the files each owns from
// info/*.list, with dpkg's diversions applied. Paths are canonicalised
// through the host's top-level directory symlinks, so /lib/x and /usr/lib/x
// are the same file on a merged-/usr host.
func LoadDpkg(dir string) (*Dpkg, error) {
	aliases, err := topLevelAliases("/")
	if err != nil {
		return nil, err
	}
	return loadDpkg(dir, aliases, "/")
}

func loadDpkg(dir string, aliases map[string]string, root string) (*Dpkg, error) {
	pkgs, err := dpkg.ReadStatus(dir)
	if err != nil {
		return nil, err
	}
	divs, err := dpkg.ReadDiversions(dir)
	if err != nil {
		return nil, err
	}
	d := &Dpkg{pkgs: pkgs, owners: make(map[string]int32, 1<<17), aliases: aliases, root: root}
	diverted := map[string]dpkg.Diversion{}
	for _, dv := range divs {
		diverted[d.canon(dv.From)] = dv
	}
	for i, p := range pkgs {
		paths, err := dpkg.ReadList(dir, p)
		if errors.Is(err, fs.ErrNotExist) {
			// dpkg keeps a list for every installed package; one without
			// simply owns nothing we can name, and its files stay unowned.
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range paths {
			c := d.canon(f)
			if dv, ok := diverted[c]; ok && dv.Package != p.Name {
				c = d.canon(dv.To)
			}
			// Packages are sorted, so a path several own (directories,
			// Multi-Arch: same files) always goes to the same one.
			if _, taken := d.owners[c]; !taken {
				d.owners[c] = int32(i)
			}
		}
	}
	return d, nil
}

// Owner returns the package that owns the host path p.
func (d *Dpkg) Owner(p string) (Package, bool) {
	if d.root != "/" {
		rel, err := filepath.Rel(d.root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return Package{}, false
		}
		p = "/" + filepath.ToSlash(rel)
	}
	i, ok := d.owners[d.canon(p)]
	if !ok {
		return Package{}, false
	}
	return d.pkgs[i], true
}

func (d *Dpkg) canon(p string) string {
	// dpkg's lists hold clean paths; cleaning only the others keeps loading
	// a full database well under a second.
	if !isClean(p) {
		p = path.Clean("/" + p)
	}
	end := strings.IndexByte(p[1:], '/') + 1
	if end == 0 {
		end = len(p)
	}
	if target, ok := d.aliases[p[:end]]; ok {
		return target + p[end:]
	}
	return p
}

// isClean reports whether p is already what path.Clean would make of it.
func isClean(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) < 2 || p[0] != '/' || p[len(p)-1] == '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		// A slash followed by "/", "./" or "../" (or ending in . or ..).
		r := p[i+1:]
		if r == "" || r[0] == '/' || r == "." || r == ".." ||
			strings.HasPrefix(r, "./") || strings.HasPrefix(r, "../") {
			return false
		}
	}
	return true
}

// topLevelAliases finds root's top-level symlinks to directories.
func topLevelAliases(root string) (map[string]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		full := filepath.Join(root, e.Name())
		if fi, err := os.Stat(full); err != nil || !fi.IsDir() {
			continue
		}
		target, err := os.Readlink(full)
		if err != nil {
			return nil, fmt.Errorf("read top-level symlink: %w", err)
		}
		out["/"+e.Name()] = path.Join("/", target)
	}
	return out, nil
}
