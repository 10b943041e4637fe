// Package closure collects what a host program needs to run inside the image:
// the binary, its dynamic loader, the shared libraries it needs (recursively),
// every symlink on the way to them, and extra files or directories that are
// loaded without the loader seeing them (dlopen'd modules, data). Later
// payloads such as QEMU and libvirt are added to the image this way.
//
// Files keep their real host paths. On a merged-/usr host (Debian 12) that is
// under /usr, and the top-level /lib, /lib64, /bin and /sbin symlinks are
// added as the host has them, so paths baked into binaries
// (/lib64/ld-linux-x86-64.so.2) keep working.
package closure

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// Spec says what to collect.
type Spec struct {
	// Binaries are programs (absolute paths). An ELF brings its loader and
	// libraries; a script brings its #! interpreter (for "#!/usr/bin/env
	// NAME" that is env alone: list NAME too).
	Binaries []string
	// Extra are files or directories copied as they are, such as dlopen'd
	// modules or data directories. ELF files among them bring their own
	// libraries, since a dlopen'd module has dependencies of its own.
	Extra []string
}

// Options tune where files are looked up.
type Options struct {
	// Root is the file system the paths refer to, as if chrooted into it.
	// Default "/".
	Root string
	// SearchPaths are the library directories searched after an object's
	// DT_RPATH/DT_RUNPATH. Default: the directories of Root's
	// /etc/ld.so.conf (with its includes), then the directories glibc
	// searches on Debian amd64 even when ld.so.conf does not name them:
	// /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib64, /usr/lib64,
	// /lib, /usr/lib.
	SearchPaths []string
}

// defaultDirs are documented at Options.SearchPaths.
var defaultDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// Closure is the set of host files a Spec needs.
type Closure struct {
	// Root is the file system the paths below refer to (Options.Root).
	Root string
	// Files are the regular files, as absolute paths inside Root, sorted.
	// Each is at its real path: no symlink leads to it within its path.
	Files []string
	// Links maps each symlink met on the way to a file (absolute path inside
	// Root) to its target, exactly as the host has it.
	Links map[string]string
	// Dirs are the directories taken from Extra, sorted; they keep their
	// host permissions.
	Dirs []string

	modes map[string]fs.FileMode
}

// Resolve collects the closure of spec. All missing binaries and libraries
// are reported together.
func Resolve(spec Spec, opts Options) (*Closure, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("closure root: %w", err)
	}
	r := &resolver{
		root:  root,
		files: map[string]fs.FileMode{},
		links: map[string]string{},
		dirs:  map[string]fs.FileMode{},
		done:  map[string]bool{},
		found: map[string]libResult{},
	}
	r.search = opts.SearchPaths
	if r.search == nil {
		conf, err := ldSoConfDirs(root)
		if err != nil {
			return nil, err
		}
		r.search = dedup(append(conf, defaultDirs...))
	}
	for _, b := range spec.Binaries {
		r.binary(b, 0)
	}
	for _, e := range spec.Extra {
		r.extra(e)
	}
	if err := r.topLevelLinks(); err != nil {
		r.errs = append(r.errs, err)
	}
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	c := &Closure{Root: root, Links: r.links, modes: map[string]fs.FileMode{}}
	for p, m := range r.files {
		c.Files = append(c.Files, p)
		c.modes[p] = m
	}
	for p, m := range r.dirs {
		c.Dirs = append(c.Dirs, p)
		c.modes[p] = m
	}
	sort.Strings(c.Files)
	sort.Strings(c.Dirs)
	return c, nil
}

// AddTo puts every directory, file and symlink of c into t at its path.
func (c *Closure) AddTo(t *rootfs.Tree) error {
	for _, d := range c.Dirs {
		if err := t.AddDir(d, c.modes[d]); err != nil {
			return fmt.Errorf("closure: %w", err)
		}
	}
	for _, f := range c.Files {
		if err := t.AddFile(f, c.host(f), c.modes[f]); err != nil {
			return fmt.Errorf("closure: %w", err)
		}
	}
	links := make([]string, 0, len(c.Links))
	for l := range c.Links {
		links = append(links, l)
	}
	sort.Strings(links)
	for _, l := range links {
		if err := t.AddSymlink(l, c.Links[l]); err != nil {
			return fmt.Errorf("closure: %w", err)
		}
	}
	return nil
}

func (c *Closure) host(p string) string { return filepath.Join(c.Root, filepath.FromSlash(p)) }

type link struct{ path, target string }

type libResult struct {
	path, real string
	links      []link
	ok         bool
}

type resolver struct {
	root   string
	search []string
	files  map[string]fs.FileMode
	links  map[string]string
	dirs   map[string]fs.FileMode
	done   map[string]bool      // objects whose dependencies were collected
	found  map[string]libResult // library lookups by name and search list
	errs   []error
}

func (r *resolver) host(p string) string { return filepath.Join(r.root, filepath.FromSlash(p)) }

// follow resolves p inside the root the way the kernel would after chroot,
// returning the real path and every symlink met on the way.
func (r *resolver) follow(p string) (string, []link, error) {
	if !path.IsAbs(p) {
		return "", nil, fmt.Errorf("%s: not an absolute path", p)
	}
	var links []link
	done := "/"
	rest := strings.Split(p, "/")
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			done = path.Dir(done)
			continue
		}
		cur := path.Join(done, name)
		fi, err := os.Lstat(r.host(cur))
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(rest) > 0 && !fi.IsDir() {
				return "", nil, fmt.Errorf("%s: %s is not a directory", p, cur)
			}
			done = cur
			continue
		}
		if hops++; hops > 40 {
			return "", nil, fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(r.host(cur))
		if err != nil {
			return "", nil, err
		}
		links = append(links, link{cur, target})
		if path.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return done, links, nil
}

func (r *resolver) commit(links []link) {
	for _, l := range links {
		r.links[l.path] = l.target
	}
}

// add records the regular file at real path p.
func (r *resolver) add(p string) (fs.FileInfo, error) {
	fi, err := os.Lstat(r.host(p))
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return fi, fmt.Errorf("%s: not a regular file", p)
	}
	r.files[p] = fi.Mode().Perm()
	return fi, nil
}

// binary collects program p. depth bounds #! chains.
func (r *resolver) binary(p string, depth int) {
	real, links, err := r.follow(p)
	if errors.Is(err, fs.ErrNotExist) {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %s not found (is its Debian package installed?)", p))
		return
	}
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %w", err))
		return
	}
	r.commit(links)
	fi, err := r.add(real)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %s: %w", p, err))
		return
	}
	if fi.Mode().Perm()&0o111 == 0 {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %s is not executable", p))
		return
	}
	isELF, err := r.object(p, real, real, nil)
	if err != nil {
		r.errs = append(r.errs, err)
		return
	}
	if isELF {
		if m, _ := r.machine(real); m != nativeMachine {
			r.errs = append(r.errs, fmt.Errorf("closure: binary %s is for %v, not this host's %v", p, m, nativeMachine))
		}
		return
	}
	interp, err := r.shebang(real)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %s: %w", p, err))
		return
	}
	if interp == "" {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %s is neither an ELF file nor a #! script", p))
		return
	}
	if depth > 4 {
		r.errs = append(r.errs, fmt.Errorf("closure: binary %s: #! interpreters nest too deep", p))
		return
	}
	r.binary(interp, depth+1)
}

// shebang returns the interpreter of a #! script, or "".
func (r *resolver) shebang(p string) (string, error) {
	f, err := os.Open(r.host(p))
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", nil
	}
	rest, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return "", nil
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", fmt.Errorf("empty #! line")
	}
	return fields[0], nil
}

// object collects the loader and libraries of the ELF file at real path
// real, reached as loadPath, for program bin. inherited are the DT_RPATH
// directories of the objects that loaded it. It reports whether the file is
// an ELF file at all.
func (r *resolver) object(bin, loadPath, real string, inherited []string) (bool, error) {
	if r.done[real] {
		return true, nil
	}
	isELF, err := hasELFMagic(r.host(real))
	if err != nil || !isELF {
		return false, err
	}
	f, err := elf.Open(r.host(real))
	if err != nil {
		return true, fmt.Errorf("closure: %s: %w", real, err)
	}
	defer f.Close()
	r.done[real] = true
	if f.Machine != nativeMachine {
		// Firmware and guest images in data directories (QEMU's
		// openbios-ppc, SLOF) are ELF files for other machines: data here,
		// with no loader or libraries on this host.
		return true, nil
	}

	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(prog.Open()); err != nil {
			return true, fmt.Errorf("closure: %s: read PT_INTERP: %w", real, err)
		}
		interp := strings.TrimRight(buf.String(), "\x00")
		ireal, links, err := r.follow(interp)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("closure: %s needs the dynamic loader %s: %w", bin, interp, err))
			continue
		}
		r.commit(links)
		if _, err := r.add(ireal); err != nil {
			r.errs = append(r.errs, fmt.Errorf("closure: %s needs the dynamic loader %s: %w", bin, interp, err))
			continue
		}
		if _, err := r.object(bin, interp, ireal, nil); err != nil {
			return true, err
		}
	}

	needed, err := f.ImportedLibraries()
	if err != nil {
		return true, fmt.Errorf("closure: %s: read DT_NEEDED: %w", real, err)
	}
	if len(needed) == 0 {
		return true, nil
	}
	runpath, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return true, fmt.Errorf("closure: %s: read DT_RUNPATH: %w", real, err)
	}
	rpath, err := f.DynString(elf.DT_RPATH)
	if err != nil {
		return true, fmt.Errorf("closure: %s: read DT_RPATH: %w", real, err)
	}
	origin := path.Dir(loadPath)
	own := expand(rpath, origin)
	// glibc's order: DT_RPATH of the object and its loaders (ignored when
	// the object has DT_RUNPATH), DT_RUNPATH, then the system directories.
	var dirs []string
	if len(runpath) == 0 {
		dirs = append(dirs, own...)
		dirs = append(dirs, inherited...)
	}
	dirs = append(dirs, expand(runpath, origin)...)
	dirs = dedup(append(dirs, r.search...))
	childInherited := append(append([]string(nil), own...), inherited...)

	for _, name := range needed {
		res := r.findLib(name, dirs, f.Class, f.Machine)
		if !res.ok {
			who := bin
			if real != bin {
				who = bin + ": " + real
			}
			r.errs = append(r.errs, fmt.Errorf("closure: %s needs %s: not found in %s", who, name, strings.Join(dirs, ", ")))
			continue
		}
		r.commit(res.links)
		if _, err := r.add(res.real); err != nil {
			r.errs = append(r.errs, fmt.Errorf("closure: %s needs %s: %w", bin, name, err))
			continue
		}
		if _, err := r.object(bin, res.path, res.real, childInherited); err != nil {
			return true, err
		}
	}
	return true, nil
}

// hasELFMagic tells an ELF file from data and scripts without parsing it.
func hasELFMagic(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, fmt.Errorf("closure: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return false, nil
	}
	return string(magic[:]) == elf.ELFMAG, nil
}

// findLib looks name up in dirs and returns the first candidate that is an
// ELF object of the needing object's class and machine; ld.so skips others
// (a 32-bit library in a directory searched first must not win).
func (r *resolver) findLib(name string, dirs []string, class elf.Class, machine elf.Machine) libResult {
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%s", name, class, machine, strings.Join(dirs, "\x00"))
	if res, ok := r.found[key]; ok {
		return res
	}
	res := libResult{}
	if strings.Contains(name, "/") {
		// A DT_NEEDED with a slash is a path, not a name to search.
		dirs = []string{""}
	}
	for _, d := range dirs {
		cand := name
		if d != "" {
			cand = path.Join(d, name)
		}
		if !path.IsAbs(cand) {
			continue
		}
		real, links, err := r.follow(cand)
		if err != nil {
			continue
		}
		if r.matches(real, class, machine) {
			res = libResult{path: cand, real: real, links: links, ok: true}
			break
		}
	}
	r.found[key] = res
	return res
}

// nativeMachine is the machine the image runs on: the one this builder was
// compiled for, since the image is built on a host of its own kind.
var nativeMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386,
	"arm": elf.EM_ARM, "riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
}[runtime.GOARCH]

func (r *resolver) machine(p string) (elf.Machine, error) {
	f, err := elf.Open(r.host(p))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Machine, nil
}

func (r *resolver) matches(p string, class elf.Class, machine elf.Machine) bool {
	f, err := elf.Open(r.host(p))
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Class == class && f.Machine == machine
}

// expand turns DT_RPATH/DT_RUNPATH strings into directories, replacing
// $ORIGIN with the object's directory. Other dynamic string tokens ($LIB,
// $PLATFORM) are left as they are, so such entries match nothing.
func expand(entries []string, origin string) []string {
	var out []string
	for _, e := range entries {
		for _, d := range strings.Split(e, ":") {
			if d == "" {
				continue
			}
			d = strings.ReplaceAll(d, "${ORIGIN}", origin)
			d = strings.ReplaceAll(d, "$ORIGIN", origin)
			out = append(out, path.Clean(d))
		}
	}
	return out
}

func dedup(dirs []string) []string {
	seen := map[string]bool{}
	out := dirs[:0:0]
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// extra collects a file or directory as it is.
func (r *resolver) extra(p string) {
	real, links, err := r.follow(p)
	if errors.Is(err, fs.ErrNotExist) {
		r.errs = append(r.errs, fmt.Errorf("closure: extra file %s not found (is its Debian package installed?)", p))
		return
	}
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("closure: extra file %w", err))
		return
	}
	r.commit(links)
	if err := r.entry(p, real, map[string]bool{}); err != nil {
		r.errs = append(r.errs, err)
	}
}

// entry collects the real path real (reached from the Extra entry p):
// directories recursively, regular files with their ELF dependencies.
func (r *resolver) entry(p, real string, visiting map[string]bool) error {
	fi, err := os.Lstat(r.host(real))
	if err != nil {
		return fmt.Errorf("closure: extra file %s: %w", p, err)
	}
	switch {
	case fi.Mode().IsRegular():
		r.files[real] = fi.Mode().Perm()
		if _, err := r.object(p, real, real, nil); err != nil {
			return err
		}
		return nil
	case fi.IsDir():
		if visiting[real] {
			return nil
		}
		visiting[real] = true
		r.dirs[real] = fi.Mode().Perm()
		ents, err := os.ReadDir(r.host(real))
		if err != nil {
			return fmt.Errorf("closure: extra directory %s: %w", p, err)
		}
		for _, e := range ents {
			child := path.Join(real, e.Name())
			if e.Type()&fs.ModeSymlink != 0 {
				creal, links, err := r.follow(child)
				if err != nil {
					// Copied as is: a dangling link stays dangling, as on
					// the host.
					target, rerr := os.Readlink(r.host(child))
					if rerr != nil {
						return fmt.Errorf("closure: extra file %s: %w", child, rerr)
					}
					r.links[child] = target
					continue
				}
				r.commit(links)
				if err := r.entry(child, creal, visiting); err != nil {
					return err
				}
				continue
			}
			if err := r.entry(child, child, visiting); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("closure: extra file %s: unsupported file type %s", p, fi.Mode().Type())
}

// topLevelLinks adds the host's top-level directory symlinks (merged-/usr's
// /lib -> usr/lib and friends) whose target holds part of the closure, so
// that paths through them resolve in the image as on the host.
func (r *resolver) topLevelLinks() error {
	ents, err := os.ReadDir(r.root)
	if err != nil {
		return fmt.Errorf("closure: read root: %w", err)
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		p := "/" + e.Name()
		real, links, err := r.follow(p)
		if err != nil || real == "/" {
			continue
		}
		fi, err := os.Stat(r.host(real))
		if err != nil || !fi.IsDir() {
			continue
		}
		if r.holds(real) {
			r.commit(links)
		}
	}
	return nil
}

func (r *resolver) holds(dir string) bool {
	prefix := dir + "/"
	for p := range r.files {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	for p := range r.dirs {
		if p == dir || strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}
