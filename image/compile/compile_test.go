package compile

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/rootfs"
)

// sourceTree writes files (slash paths relative to the root) into a new temp dir.
func sourceTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func hashSource(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	if err := HashSource(&b, dir); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHashSourceExact(t *testing.T) {
	dir := sourceTree(t, map[string]string{
		"go.mod":                       "module m\n",
		"go.sum":                       "s\n",
		"main.go":                      "package main\n",
		"main_test.go":                 "package main // test\n",
		"config/config.go":             "package config\n",
		"config/testdata/x.go":         "package testdata\n",
		"config/testdata/hv.yaml":      "a: 1\n",
		"profiles/debug.yaml":          "p: d\n",
		"qemu-tests/boot.go":           "package qemutests\n",
		"qemu-tests/floorinit/main.go": "package main\n",
		".git/hooks/x.go":              "package hooks\n",
		"pkg/.hidden/y.go":             "package y\n",
		"out/gen.go":                   "package out\n",
		"bin/tool.go":                  "package bin\n",
		"README.md":                    "# readme\n",
		"sub/go.mod":                   "module sub\n",
		"sub/notes.txt":                "notes\n",
	})
	want := "file config/config.go 15\npackage config\n" +
		"file go.mod 9\nmodule m\n" +
		"file go.sum 2\ns\n" +
		"file main.go 13\npackage main\n" +
		"file profiles/debug.yaml 5\np: d\n"
	if got := hashSource(t, dir); got != want {
		t.Errorf("HashSource wrote:\n%s\nwant:\n%s", got, want)
	}
}

func TestHashSourceChanges(t *testing.T) {
	base := map[string]string{
		"go.mod":           "module m\n",
		"main.go":          "package main\n",
		"config/config.go": "package config\n",
	}
	dir := sourceTree(t, base)
	h0 := hashSource(t, dir)
	if h := hashSource(t, dir); h != h0 {
		t.Fatal("HashSource is not deterministic")
	}
	for _, tc := range []struct {
		name    string
		file    string
		content string
		changes bool
	}{
		{"edit a .go file", "config/config.go", "package config // changed\n", true},
		{"add a .go file", "config/more.go", "package config\n", true},
		{"edit go.mod", "go.mod", "module m\n\ngo 1.26\n", true},
		{"add go.sum", "go.sum", "x\n", true},
		{"add a test file", "config/config_test.go", "package config\n", false},
		{"add to qemu-tests", "qemu-tests/floorinit/main.go", "package main\n", false},
		{"add to testdata", "config/testdata/t.go", "package t\n", false},
		{"add to a hidden dir", ".cache/x.go", "package x\n", false},
		{"add a non-Go file", "config/README", "text\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := sourceTree(t, base)
			p := filepath.Join(dir, filepath.FromSlash(tc.file))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if changed := hashSource(t, dir) != h0; changed != tc.changes {
				t.Errorf("hash changed = %v, want %v", changed, tc.changes)
			}
		})
	}
}

func TestHashSourceMissingDir(t *testing.T) {
	var b bytes.Buffer
	if err := HashSource(&b, filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("HashSource of a missing dir succeeded")
	}
}

func TestKey(t *testing.T) {
	dir := sourceTree(t, map[string]string{"go.mod": "module m\n", "a.go": "package a\n"})
	pkgs := []string{"m/cmd/hvinit"}
	dirs := []string{filepath.Join(dir, "cmd/hvinit")}
	key := func(goVersion string, pkgs, dirs, tags []string) string {
		t.Helper()
		k, err := Key(goVersion, dir, pkgs, dirs, tags)
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
			t.Fatalf("Key = %q, want 64 hex digits", k)
		}
		return k
	}
	k0 := key("go1.26.8", pkgs, dirs, nil)
	if k := key("go1.26.8", pkgs, dirs, nil); k != k0 {
		t.Fatalf("Key not deterministic: %s vs %s", k, k0)
	}
	for _, tc := range []struct {
		name       string
		goVersion  string
		pkgs, dirs []string
		tags       []string
	}{
		{"go version", "go1.26.9", pkgs, dirs, nil},
		{"tags", "go1.26.8", pkgs, dirs, []string{"debug"}},
		{"another package", "go1.26.8", append(pkgs, "m/cmd/ls"), append(dirs, filepath.Join(dir, "cmd/ls")), nil},
		{"package dir (module version)", "go1.26.8", pkgs, []string{"/root/go/pkg/mod/m@v1.2.3/cmd/hvinit"}, nil},
	} {
		if k := key(tc.goVersion, tc.pkgs, tc.dirs, tc.tags); k == k0 {
			t.Errorf("%s: Key unchanged", tc.name)
		}
	}
	// Tags and packages must not run together: ["a b"] differs from ["a", "b"].
	if key("go1.26.8", pkgs, dirs, []string{"a b"}) == key("go1.26.8", pkgs, dirs, []string{"a", "b"}) {
		t.Error(`Key: tags ["a b"] and ["a" "b"] collide`)
	}

	if err := os.WriteFile(filepath.Join(dir, "a.go"), []byte("package a // edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if k := key("go1.26.8", pkgs, dirs, nil); k == k0 {
		t.Error("Key unchanged after a source edit")
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestBusyboxFloorinit(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles with the Go toolchain")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	c := cache.Cache{Root: t.TempDir()}
	opts := Options{
		SourceDir: moduleRoot(t),
		Packages:  []string{"hardvisor.dev/hardvisor/qemu-tests/floorinit"},
		Cache:     c,
	}
	r, err := Busybox(opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cached {
		t.Error("first build: Cached = true")
	}
	if want := []string{"floorinit"}; !reflect.DeepEqual(r.Commands, want) {
		t.Errorf("Commands = %q, want %q", r.Commands, want)
	}
	if want := map[string]string{"bbin/floorinit": "bb"}; !reflect.DeepEqual(r.Links, want) {
		t.Errorf("Links = %q, want %q", r.Links, want)
	}
	if want := filepath.Join(c.Root, "compile", r.Key, "bb"); r.Binary != want {
		t.Errorf("Binary = %q, want %q", r.Binary, want)
	}
	if len(r.Modules) != 0 {
		t.Errorf("Modules = %v, want none (floorinit is hardvisor's own)", r.Modules)
	}
	ver, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(ver)); r.GoVersion != want {
		t.Errorf("GoVersion = %q, want %q", r.GoVersion, want)
	}

	f, err := elf.Open(r.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
		t.Errorf("binary is %v %v %v, want a 64-bit x86-64 executable", f.Class, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has %v: not static", p.Type)
		}
	}
	f.Close()

	tree := rootfs.New()
	if err := r.AddTo(tree); err != nil {
		t.Fatal(err)
	}
	want := []rootfs.Entry{
		{Path: "bbin", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "bbin/bb", Kind: rootfs.File, Mode: 0o755, Source: r.Binary},
		{Path: "bbin/floorinit", Kind: rootfs.Symlink, Mode: 0o777, Target: "bb"},
	}
	if got := tree.Entries(); !reflect.DeepEqual(got, want) {
		t.Errorf("AddTo entries:\n got %+v\nwant %+v", got, want)
	}

	r2, err := Busybox(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Cached || r2.Key != r.Key || r2.Binary != r.Binary || !reflect.DeepEqual(r2.Links, r.Links) ||
		!reflect.DeepEqual(r2.Commands, r.Commands) || r2.GoVersion != r.GoVersion {
		t.Errorf("second build = %+v, want the first %+v from the cache", r2, r)
	}
	ents, err := os.ReadDir(filepath.Join(c.Root, "compile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != r.Key {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cache holds %q, want only %q (temp dirs removed)", names, r.Key)
	}

	// A different tag is a different key (and a fresh build).
	opts.Tags = []string{"hvtest"}
	r3, err := Busybox(opts)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Cached || r3.Key == r.Key {
		t.Errorf("build with tags: Cached = %v, Key = %s (first %s); want a fresh build under a new key", r3.Cached, r3.Key, r.Key)
	}
}

func TestBusyboxNotACommand(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	_, err := Busybox(Options{
		SourceDir: moduleRoot(t),
		Packages:  []string{"hardvisor.dev/hardvisor/config"},
		Cache:     cache.Cache{Root: t.TempDir()},
	})
	if want := "hardvisor.dev/hardvisor/config is package config, not a command"; err == nil || err.Error() != want {
		t.Errorf("Busybox(config) = %v, want %q", err, want)
	}
}

func TestBusyboxUnknownPackage(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	root := moduleRoot(t)
	_, err := Busybox(Options{
		SourceDir: root,
		Packages:  []string{"example.com/not/required"},
		Cache:     cache.Cache{Root: t.TempDir()},
	})
	if err == nil || !strings.HasPrefix(err.Error(), "go list in "+root+": exit status 1: ") ||
		!strings.HasSuffix(err.Error(), " (is every command package required in go.mod?)") {
		t.Errorf("Busybox(unknown package) = %v", err)
	}
}

func TestLoadBadLinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bb"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "links"), []byte("bbin/ls bb\nnospace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := load(dir, "k")
	if want := "compile cache " + dir + `: bad links line "nospace"`; err == nil || err.Error() != want {
		t.Errorf("load = %v, want %q", err, want)
	}
}
