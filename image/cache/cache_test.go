package cache

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestPath(t *testing.T) {
	c := Cache{Root: "/var/cache/hv"}
	if got, want := c.Path("compile", "abc123"), "/var/cache/hv/compile/abc123"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
}

func TestLookup(t *testing.T) {
	root := t.TempDir()
	c := Cache{Root: root}
	if p, ok := c.Lookup("compile", "k1"); ok || p != "" {
		t.Errorf("Lookup on empty cache = %q, %v; want \"\", false", p, ok)
	}
	if err := os.MkdirAll(filepath.Join(root, "compile", "k1"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A plain file at the entry path is not an entry.
	writeFile(t, filepath.Join(root, "compile", "k2"), "not a dir")
	if p, ok := c.Lookup("compile", "k1"); !ok || p != filepath.Join(root, "compile", "k1") {
		t.Errorf("Lookup(k1) = %q, %v; want %q, true", p, ok, filepath.Join(root, "compile", "k1"))
	}
	if p, ok := c.Lookup("compile", "k2"); ok || p != "" {
		t.Errorf("Lookup(k2, a file) = %q, %v; want \"\", false", p, ok)
	}
	if p, ok := c.Lookup("kernel", "k1"); ok || p != "" {
		t.Errorf("Lookup(other kind) = %q, %v; want \"\", false", p, ok)
	}
}

func TestTempDirAndStore(t *testing.T) {
	root := t.TempDir()
	c := Cache{Root: root}
	tmp, err := c.TempDir("compile")
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Dir(tmp); got != filepath.Join(root, "compile") {
		t.Errorf("TempDir parent = %q, want %q", got, filepath.Join(root, "compile"))
	}
	if base := filepath.Base(tmp); !strings.HasPrefix(base, ".tmp-") {
		t.Errorf("TempDir name = %q, want a .tmp- prefix", base)
	}
	writeFile(t, filepath.Join(tmp, "bb"), "binary")

	p, err := c.Store("compile", "key1", tmp)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "compile", "key1"); p != want {
		t.Errorf("Store = %q, want %q", p, want)
	}
	if got := readFile(t, filepath.Join(p, "bb")); got != "binary" {
		t.Errorf("stored bb = %q, want %q", got, "binary")
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temp dir still there after Store: %v", err)
	}
	if got, ok := c.Lookup("compile", "key1"); !ok || got != p {
		t.Errorf("Lookup after Store = %q, %v", got, ok)
	}
	if got, want := names(t, filepath.Join(root, "compile")), []string{"key1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("compile dir holds %q, want %q", got, want)
	}
}

func TestStoreSecondKeepsFirst(t *testing.T) {
	root := t.TempDir()
	c := Cache{Root: root}
	first, err := c.TempDir("compile")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(first, "bb"), "first")
	second, err := c.TempDir("compile")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(second, "bb"), "second")

	p1, err := c.Store("compile", "k", first)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Store("compile", "k", second)
	if err != nil {
		t.Fatalf("second Store: %v", err)
	}
	if p1 != p2 {
		t.Errorf("Store paths differ: %q, %q", p1, p2)
	}
	if got := readFile(t, filepath.Join(p2, "bb")); got != "first" {
		t.Errorf("entry content = %q, want the first store's %q", got, "first")
	}
	if _, err := os.Stat(second); !os.IsNotExist(err) {
		t.Errorf("second temp dir not removed: %v", err)
	}
	if got, want := names(t, filepath.Join(root, "compile")), []string{"k"}; !reflect.DeepEqual(got, want) {
		t.Errorf("compile dir holds %q, want %q", got, want)
	}
}

func TestStoreMissingDir(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	_, err := c.Store("compile", "k", filepath.Join(c.Root, "nope"))
	if err == nil || !strings.HasPrefix(err.Error(), "store compile in cache: rename ") {
		t.Errorf("Store of a missing dir = %v, want a \"store compile in cache: rename\" error", err)
	}
}

func TestPrune(t *testing.T) {
	root := t.TempDir()
	c := Cache{Root: root}
	dir := filepath.Join(root, "compile")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// name -> age in hours (older = larger)
	ages := map[string]int{"a": 5, "b": 1, "c": 3, "d": 2, "e": 4}
	for n, age := range ages {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(p, "bb"), n)
		mt := base.Add(-time.Duration(age) * time.Hour)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	// A dot-dir (an in-progress TempDir) is the oldest but must survive.
	if err := os.MkdirAll(filepath.Join(dir, ".tmp-123"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := base.Add(-100 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, ".tmp-123"), old, old); err != nil {
		t.Fatal(err)
	}
	// Plain files are not entries.
	writeFile(t, filepath.Join(dir, "stray"), "x")
	if err := os.Chtimes(filepath.Join(dir, "stray"), old, old); err != nil {
		t.Fatal(err)
	}

	if err := c.Prune("compile", 3); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{".tmp-123", "b", "c", "d", "stray"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Prune(3): %q, want %q", got, want)
	}
	if err := c.Prune("compile", 10); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{".tmp-123", "b", "c", "d", "stray"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Prune(10): %q, want %q", got, want)
	}
	if err := c.Prune("compile", 0); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{".tmp-123", "stray"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Prune(0): %q, want %q", got, want)
	}
}

func TestPruneMissingKind(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	if err := c.Prune("never-built", 1); err != nil {
		t.Errorf("Prune of a missing kind = %v, want nil", err)
	}
}

func TestDefault(t *testing.T) {
	t.Setenv("HARDVISOR_CACHE", "/srv/hv-cache")
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/srv/hv-cache" {
		t.Errorf("Default().Root = %q, want /srv/hv-cache", c.Root)
	}

	t.Setenv("HARDVISOR_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	c, err = Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/xdg/hardvisor" {
		t.Errorf("Default().Root with XDG_CACHE_HOME = %q, want /xdg/hardvisor", c.Root)
	}

	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/builder")
	c, err = Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/home/builder/.cache/hardvisor" {
		t.Errorf("Default().Root with HOME = %q, want /home/builder/.cache/hardvisor", c.Root)
	}

	t.Setenv("HOME", "")
	_, err = Default()
	if err == nil || !strings.HasPrefix(err.Error(), "find a cache directory (set HARDVISOR_CACHE): ") {
		t.Errorf("Default() with no HOME = %v, want a \"find a cache directory\" error", err)
	}
}
