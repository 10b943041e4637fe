// Package dpkg reads the Debian package database (/var/lib/dpkg): which packages
// are installed, at which version, and which files each one owns. The build takes
// its components (kernel, QEMU, libvirt, boot loader) from the build host's Debian
// packages, so the kernel stage uses it to find the kernel and the SBOM stage to
// say where every file of the image came from.
package dpkg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Package is one installed binary package.
type Package struct {
	Name         string
	Architecture string
	Version      string
	// Source and SourceVersion name the source package it was built from; both
	// are filled in from Name and Version when the status file omits them.
	// Security trackers key on the source package, so the SBOM keeps them.
	Source        string
	SourceVersion string
}

// ID is the package's name qualified by its architecture ("libc6:amd64"), the
// form dpkg uses to tell Multi-Arch: same packages apart.
func (p Package) ID() string { return p.Name + ":" + p.Architecture }

// ReadStatus reads the status file in the dpkg directory dir and returns its
// installed packages, sorted by name and architecture.
func ReadStatus(dir string) ([]Package, error) {
	name := filepath.Join(dir, "status")
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read dpkg status: %w", err)
	}
	defer f.Close()
	pkgs, err := ParseStatus(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return pkgs, nil
}

// ParseStatus parses a dpkg status file and returns the packages that are
// installed (status "<want> ok installed"; a held package is installed too),
// sorted by name and architecture. Removed packages whose configuration files
// remain, and half-installed ones, are left out: their files are not reliably
// on disk.
func ParseStatus(r io.Reader) ([]Package, error) {
	var (
		pkgs   []Package
		fields = map[string]string{}
		start  int // line of the current stanza, for error messages
		line   int
	)
	flush := func() error {
		defer clear(fields)
		if len(fields) == 0 {
			return nil
		}
		st := strings.Fields(fields["Status"])
		if len(st) != 3 || st[1] != "ok" || st[2] != "installed" {
			return nil
		}
		p := Package{
			Name:         fields["Package"],
			Architecture: fields["Architecture"],
			Version:      fields["Version"],
		}
		var missing []string
		for _, f := range []struct{ name, v string }{
			{"Package", p.Name}, {"Architecture", p.Architecture}, {"Version", p.Version},
		} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("line %d: installed package %q has no %s field", start, p.Name, strings.Join(missing, ", "))
		}
		p.Source, p.SourceVersion = p.Name, p.Version
		if src := fields["Source"]; src != "" {
			// "Source: name" or "Source: name (version)" when the binary
			// version differs from the source version (binNMUs, signed kernels).
			name, ver, ok := strings.Cut(src, " ")
			p.Source = name
			if ok {
				ver = strings.TrimSpace(ver)
				if !strings.HasPrefix(ver, "(") || !strings.HasSuffix(ver, ")") {
					return fmt.Errorf("line %d: package %s: malformed Source field %q", start, p.Name, src)
				}
				p.SourceVersion = strings.TrimSpace(ver[1 : len(ver)-1])
			}
		}
		pkgs = append(pkgs, p)
		return nil
	}

	sc := bufio.NewScanner(r)
	// Description and Conffiles continuation lines can be long.
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var last string
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case strings.TrimSpace(text) == "":
			if err := flush(); err != nil {
				return nil, err
			}
			last = ""
		case text[0] == ' ' || text[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation line outside a field", line)
			}
			// Only single-line fields are used; continuations are skipped.
		default:
			name, value, ok := strings.Cut(text, ":")
			if !ok {
				return nil, fmt.Errorf("line %d: want \"Field: value\", got %q", line, text)
			}
			if len(fields) == 0 {
				start = line
			}
			last = name
			fields[name] = strings.TrimSpace(value)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	sort.Slice(pkgs, func(i, j int) bool {
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Architecture < pkgs[j].Architecture
	})
	return pkgs, nil
}

// ReadList returns the paths that package p owns according to its .list file
// in dir/info. dpkg names that file "<name>:<arch>.list" for Multi-Arch: same
// packages and "<name>.list" otherwise; both are tried.
func ReadList(dir string, p Package) ([]string, error) {
	for _, base := range []string{p.ID() + ".list", p.Name + ".list"} {
		name := filepath.Join(dir, "info", base)
		// Read whole: the paths then share one string, which matters when
		// the SBOM loads all of a host's ~100k paths.
		data, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read file list of %s: %w", p.ID(), err)
		}
		paths, err := parseList(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return paths, nil
	}
	return nil, fmt.Errorf("read file list of %s: no %s.list or %s.list in %s: %w",
		p.ID(), p.ID(), p.Name, filepath.Join(dir, "info"), os.ErrNotExist)
}

// ParseList parses a dpkg .list file: one absolute path per line. The package's
// directories are listed as well as its files.
func ParseList(r io.Reader) ([]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parseList(string(data))
}

func parseList(s string) ([]string, error) {
	paths := make([]string, 0, strings.Count(s, "\n")+1)
	for line := 1; s != ""; line++ {
		p, rest, _ := strings.Cut(s, "\n")
		s = rest
		if p == "" {
			continue
		}
		if p[0] != '/' {
			return nil, fmt.Errorf("line %d: path %q is not absolute", line, p)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
