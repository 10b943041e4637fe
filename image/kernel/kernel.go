// Package kernel finds the Debian kernel the image boots and picks the kernel
// modules it needs. The kernel comes from the build host's installed
// linux-image package (or a path the user gives), never from the running
// kernel: the build host may run anything.
//
// The package is pure Go without cgo, so that PID 1 can import it for
// ParseLoadList and for ReadIndex, which picks from the image's modules the
// ones the hardware and the config need.
package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"hardvisor.dev/hardvisor/image/sbom/dpkg"
)

// Kernel is one kernel image and the modules built for it.
type Kernel struct {
	// Release is the kernel release ("6.1.0-57-amd64"), what uname -r prints
	// on the booted host and the name of its modules directory.
	Release string
	// Image is the host path of the bzImage (vmlinuz).
	Image string
	// ModulesDir is the host directory holding the release's modules.
	ModulesDir string
	// Package and PackageVersion name the Debian package that ships the
	// kernel; both are empty for a kernel given by path that no package owns.
	Package        string
	PackageVersion string
}

// FindOptions says where to look for the kernel. The zero value looks in the
// build host's standard places.
type FindOptions struct {
	// Path is an explicit kernel image. Empty means: the newest installed
	// Debian linux-image package.
	Path string
	// ModulesRoot holds one directory of modules per release. Default
	// "/usr/lib/modules".
	ModulesRoot string
	// DpkgDir is dpkg's database. Default "/var/lib/dpkg".
	DpkgDir string
	// BootDir is where packaged kernel images are installed. Default "/boot".
	BootDir string
}

func (o *FindOptions) setDefaults() {
	if o.ModulesRoot == "" {
		o.ModulesRoot = "/usr/lib/modules"
	}
	if o.DpkgDir == "" {
		o.DpkgDir = "/var/lib/dpkg"
	}
	if o.BootDir == "" {
		o.BootDir = "/boot"
	}
}

// errNoKernel is what the user sees when the host has no usable kernel
// package; it says what to do about it.
var errNoKernel = errors.New("no Debian kernel found: apt-get install linux-image-amd64 (or pass --kernel PATH)")

// Find locates the kernel image and its modules directory.
func Find(opts FindOptions) (*Kernel, error) {
	opts.setDefaults()
	var (
		k   *Kernel
		err error
	)
	if opts.Path != "" {
		k, err = findByPath(opts)
	} else {
		k, err = findInstalled(opts)
	}
	if err != nil {
		return nil, err
	}
	if err := checkModules(k); err != nil {
		return nil, err
	}
	return k, nil
}

// candidate is an installed kernel package with its image on disk.
type candidate struct {
	pkg     dpkg.Package
	release string
	image   string
}

// installedKernels lists the installed linux-image packages whose kernel
// image is present under bootDir.
func installedKernels(opts FindOptions) ([]candidate, error) {
	pkgs, err := dpkg.ReadStatus(opts.DpkgDir)
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, p := range pkgs {
		if !strings.HasPrefix(p.Name, "linux-image-") {
			continue
		}
		for _, rel := range packageReleases(opts.DpkgDir, p) {
			img := filepath.Join(opts.BootDir, "vmlinuz-"+rel)
			if fi, err := os.Stat(img); err == nil && fi.Mode().IsRegular() {
				out = append(out, candidate{pkg: p, release: rel, image: img})
			}
		}
	}
	return out, nil
}

// packageReleases returns the releases of the kernel images package p ships.
// The file list is authoritative (it also covers "-unsigned" packages, whose
// name is not the release); meta packages such as linux-image-amd64 ship no
// image and yield nothing. Without a file list the name is the best guess.
func packageReleases(dir string, p dpkg.Package) []string {
	paths, err := dpkg.ReadList(dir, p)
	if err != nil {
		return []string{strings.TrimPrefix(p.Name, "linux-image-")}
	}
	var rels []string
	for _, f := range paths {
		if rel, ok := strings.CutPrefix(f, "/boot/vmlinuz-"); ok && rel != "" && !strings.Contains(rel, "/") {
			rels = append(rels, rel)
		}
	}
	return rels
}

func findInstalled(opts FindOptions) (*Kernel, error) {
	cands, err := installedKernels(opts)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", errNoKernel, err)
	}
	if err != nil {
		return nil, fmt.Errorf("find kernel: %w", err)
	}
	if len(cands) == 0 {
		return nil, errNoKernel
	}
	// Newest package version first; the release breaks ties (two ABI
	// packages never share a version, but a local rebuild might), then the
	// name, so the choice never depends on the status file's order.
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if c := dpkg.CompareVersions(a.pkg.Version, b.pkg.Version); c != 0 {
			return c > 0
		}
		if c := dpkg.CompareVersions(a.release, b.release); c != 0 {
			return c > 0
		}
		return a.pkg.Name < b.pkg.Name
	})
	c := cands[0]
	return &Kernel{
		Release:        c.release,
		Image:          c.image,
		ModulesDir:     filepath.Join(opts.ModulesRoot, c.release),
		Package:        c.pkg.Name,
		PackageVersion: c.pkg.Version,
	}, nil
}

func findByPath(opts FindOptions) (*Kernel, error) {
	fi, err := os.Stat(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("kernel image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("kernel image %s: not a regular file", opts.Path)
	}
	rel, err := releaseOf(opts.Path)
	if err != nil {
		return nil, err
	}
	k := &Kernel{Release: rel, Image: opts.Path, ModulesDir: filepath.Join(opts.ModulesRoot, rel)}
	// A kernel given by path may still be a packaged one; naming the package
	// lets errors say what to reinstall and the SBOM stay accurate. Without a
	// dpkg database (a non-Debian host) it simply has no package.
	if cands, err := installedKernels(opts); err == nil {
		for _, c := range cands {
			if c.release == rel {
				k.Package, k.PackageVersion = c.pkg.Name, c.pkg.Version
				break
			}
		}
	}
	return k, nil
}

// releaseOf returns the release of the kernel image at p. The version string
// in the bzImage header is what the kernel reports as uname -r and what its
// modules' vermagic must match, so it wins over the file name, which is only
// used for images without one.
func releaseOf(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("kernel image: %w", err)
	}
	defer f.Close()
	v, herr := ImageVersion(f)
	if herr == nil {
		if rel, _, _ := strings.Cut(v, " "); rel != "" {
			return rel, nil
		}
	}
	if rel, ok := strings.CutPrefix(filepath.Base(p), "vmlinuz-"); ok && rel != "" {
		return rel, nil
	}
	return "", fmt.Errorf("kernel image %s: cannot tell its release: %v, and the file is not named vmlinuz-<release>", p, herr)
}

func checkModules(k *Kernel) error {
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err == nil {
		return nil
	}
	hint := fmt.Sprintf("install the modules of kernel %s there", k.Release)
	if k.Package != "" {
		hint = "apt-get install --reinstall " + k.Package
	}
	return fmt.Errorf("kernel %s: no modules.dep in %s: %s", k.Release, k.ModulesDir, hint)
}
