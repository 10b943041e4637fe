// Package cache is the builder's content-hash cache: directories of finished
// results stored under the hash of every input that made them, so an unchanged
// build is served in seconds and a changed one can never be served stale.
package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Cache is a cache rooted at a directory.
type Cache struct{ Root string }

// Default returns the cache at $HARDVISOR_CACHE, or $XDG_CACHE_HOME/hardvisor,
// or ~/.cache/hardvisor.
func Default() (Cache, error) {
	if d := os.Getenv("HARDVISOR_CACHE"); d != "" {
		return Cache{Root: d}, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return Cache{}, fmt.Errorf("find a cache directory (set HARDVISOR_CACHE): %w", err)
	}
	return Cache{Root: filepath.Join(d, "hardvisor")}, nil
}

// Path is where the entry for kind/key lives; it exists only once stored.
func (c Cache) Path(kind, key string) string { return filepath.Join(c.Root, kind, key) }

// Lookup returns the entry's directory if it is stored.
func (c Cache) Lookup(kind, key string) (string, bool) {
	p := c.Path(kind, key)
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return p, true
	}
	return "", false
}

// TempDir makes a directory on the cache's file system in which to prepare an
// entry, so Store can rename it into place.
func (c Cache) TempDir(kind string) (string, error) {
	if err := os.MkdirAll(filepath.Join(c.Root, kind), 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(filepath.Join(c.Root, kind), ".tmp-")
}

// Store moves the prepared directory dir into place as kind/key. An entry that
// another build stored first wins (their contents are equal by construction).
func (c Cache) Store(kind, key, dir string) (string, error) {
	p := c.Path(kind, key)
	if err := os.Rename(dir, p); err != nil {
		if _, ok := c.Lookup(kind, key); ok {
			os.RemoveAll(dir)
			return p, nil
		}
		return "", fmt.Errorf("store %s in cache: %w", kind, err)
	}
	return p, nil
}

// Prune keeps the newest keep entries of kind and removes the others.
func (c Cache) Prune(kind string, keep int) error {
	dir := filepath.Join(c.Root, kind)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type ent struct {
		name string
		mod  int64
	}
	var es []ent
	for _, e := range ents {
		if info, err := e.Info(); err == nil && e.IsDir() && e.Name()[0] != '.' {
			es = append(es, ent{e.Name(), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod > es[j].mod })
	for i := max(keep, 0); i < len(es); i++ {
		if err := os.RemoveAll(filepath.Join(dir, es[i].name)); err != nil {
			return err
		}
	}
	return nil
}
