// Package compile builds the Go programs that run inside the image (PID 1 and,
// in the debug profile, u-root's core commands) into one busybox-style binary with
// u-root's builder (github.com/u-root/mkuimage, gobusybox mode), caching the result
// by a hash of everything that goes into it.
package compile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage/builder"
	"github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"

	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/rootfs"
)

// BinDir is where the busybox binary and its command links live in the image.
const BinDir = "bbin"

const cacheKind = "compile"

// Options say what to compile.
type Options struct {
	// SourceDir is the root of the hardvisor module (holds go.mod).
	SourceDir string
	// Packages are the Go import paths of the commands, e.g.
	// "hardvisor.dev/hardvisor/init/hvinit", "github.com/u-root/u-root/cmds/core/ls".
	Packages []string
	// Tags are Go build tags for every package.
	Tags []string
	// Cache holds compiled binaries keyed by Key.
	Cache cache.Cache
	// Log receives the Go toolchain's progress; nil discards it.
	Log io.Writer
}

// Result is a compiled busybox binary and the commands it answers to.
type Result struct {
	// Binary is the host path of the compiled binary (inside the cache).
	Binary string
	// Commands are the command names (base of each package path), sorted.
	Commands []string
	// Links are the image paths of the command symlinks and their targets,
	// as u-root's builder made them.
	Links map[string]string
	// Key is the content hash the result is cached under.
	Key string
	// Cached is true when the result came from the cache.
	Cached bool
	// GoVersion is the toolchain's version; Modules maps each module that
	// provided a command (other than hardvisor's own) to its version.
	GoVersion string
	Modules   map[string]string
}

// Busybox compiles the packages, or returns the cached binary when nothing that
// goes into it changed.
func Busybox(opts Options) (*Result, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("the Go toolchain is needed to compile PID 1: install Go (https://go.dev/dl) and put it on PATH")
	}
	if len(opts.Packages) == 0 {
		return nil, errors.New("compile: no packages")
	}
	dirs, mods, err := packageDirs(goBin, opts.SourceDir, opts.Packages)
	if err != nil {
		return nil, err
	}
	ver, err := exec.Command(goBin, "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOVERSION: %w", err)
	}
	goVersion := strings.TrimSpace(string(ver))
	key, err := Key(goVersion, opts.SourceDir, opts.Packages, dirs, opts.Tags)
	if err != nil {
		return nil, err
	}
	withVersions := func(r *Result) *Result {
		r.GoVersion, r.Modules = goVersion, mods
		return r
	}
	if dir, ok := opts.Cache.Lookup(cacheKind, key); ok {
		r, err := load(dir, key)
		if err == nil {
			return withVersions(r), nil
		}
		// A damaged entry (a killed build, a full disk) is rebuilt, not kept.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove damaged compile cache entry: %w", err)
		}
	}
	tmp, err := opts.Cache.TempDir(cacheKind)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	goroot, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"),
		golang.WithGOROOT(strings.TrimSpace(string(goroot))), golang.WithWorkingDir(opts.SourceDir),
		golang.WithBuildTag(opts.Tags...))
	af := initramfs.NewFiles()
	b := &builder.GBBBuilder{}
	bopts := builder.Opts{
		Env:       env,
		BuildOpts: &golang.BuildOpts{},
		Packages:  dirs,
		TempDir:   filepath.Join(tmp, "gen"),
		BinaryDir: BinDir,
	}
	if err := os.Mkdir(bopts.TempDir, 0o755); err != nil {
		return nil, err
	}
	if err := b.Build(llog.New(slog.LevelInfo, llog.WritePrintf(logw)), af, bopts); err != nil {
		return nil, fmt.Errorf("compile %s: %w", strings.Join(opts.Packages, " "), err)
	}
	stage := filepath.Join(tmp, "out")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, err
	}
	src, ok := af.Files[path.Join(BinDir, "bb")]
	if !ok {
		return nil, fmt.Errorf("u-root's builder produced no %s/bb", BinDir)
	}
	if err := copyFile(src, filepath.Join(stage, "bb"), 0o755); err != nil {
		return nil, err
	}
	var links bytes.Buffer
	names := make([]string, 0, len(af.Records))
	for name := range af.Records {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := af.Records[name]
		if r.Info.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			continue
		}
		target, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.Info.FileSize)))
		if err != nil {
			return nil, fmt.Errorf("read link %s: %w", name, err)
		}
		fmt.Fprintf(&links, "%s %s\n", name, target)
	}
	if err := os.WriteFile(filepath.Join(stage, "links"), links.Bytes(), 0o644); err != nil {
		return nil, err
	}
	entry, err := opts.Cache.Store(cacheKind, key, stage)
	if err != nil {
		return nil, err
	}
	r, err := load(entry, key)
	if err != nil {
		return nil, err
	}
	r.Cached = false
	return withVersions(r), nil
}

func load(dir, key string) (*Result, error) {
	bin := filepath.Join(dir, "bb")
	if _, err := os.Stat(bin); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "links"))
	if err != nil {
		return nil, err
	}
	r := &Result{Binary: bin, Links: map[string]string{}, Key: key, Cached: true}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, target, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("compile cache %s: bad links line %q", dir, line)
		}
		r.Links[name] = target
		r.Commands = append(r.Commands, path.Base(name))
	}
	sort.Strings(r.Commands)
	return r, nil
}

// AddTo puts the binary and its command links into the image.
func (r *Result) AddTo(t *rootfs.Tree) error {
	if err := t.AddFile(path.Join(BinDir, "bb"), r.Binary, 0o755); err != nil {
		return err
	}
	for name, target := range r.Links {
		if err := t.AddSymlink(name, target); err != nil {
			return err
		}
	}
	return nil
}

// packageDirs resolves import paths to source directories, which u-root's
// builder wants, with `go list` in the hardvisor module (so every command
// package must be required in go.mod).
func packageDirs(goBin, srcDir string, pkgs []string) (dirs []string, mods map[string]string, err error) {
	args := append([]string{"list", "-f", "{{.ImportPath}} {{.Dir}} {{.Name}} {{with .Module}}{{.Path}} {{.Version}}{{end}}"}, pkgs...)
	cmd := exec.Command(goBin, args...)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list in %s: %w: %s (is every command package required in go.mod?)",
			srcDir, err, bytes.TrimSpace(stderr.Bytes()))
	}
	mods = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, nil, fmt.Errorf("go list: unexpected line %q", line)
		}
		if f[2] != "main" {
			return nil, nil, fmt.Errorf("%s is package %s, not a command", f[0], f[2])
		}
		dirs = append(dirs, f[1])
		if len(f) == 5 {
			mods[f[3]] = f[4]
		}
	}
	return dirs, mods, nil
}

// Key hashes everything the compiled binary depends on: the Go version, the
// build tags, the package list and their directories (module cache paths carry versions),
// go.mod, go.sum, and every non-test Go file of the hardvisor module.
func Key(goVersion, srcDir string, pkgs, dirs, tags []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "go %s\ntags %q\n", goVersion, tags)
	for _, p := range pkgs {
		fmt.Fprintf(h, "pkg %s\n", p)
	}
	for _, d := range dirs {
		fmt.Fprintf(h, "dir %s\n", d)
	}
	if err := HashSource(h, srcDir); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HashSource writes the name and content of go.mod, go.sum and every non-test
// .go file and embedded .yaml and .cil file under dir (skipping qemu-tests, output and hidden directories) to w,
// in a fixed order.
func HashSource(w io.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "qemu-tests" || rel == "out" || rel == "bin" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		isGo := strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go")
		// .yaml and .cil files are embedded (config, SELinux policy).
		if !isGo && rel != "go.mod" && rel != "go.sum" && !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".cil") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "file %s %d\n", filepath.ToSlash(rel), len(b))
		_, err = w.Write(b)
		return err
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
