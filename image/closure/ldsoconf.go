package closure

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ldSoConfDirs returns the library directories named by root's
// /etc/ld.so.conf and the files it includes, in order. A host without
// ld.so.conf has none.
func ldSoConfDirs(root string) ([]string, error) {
	var dirs []string
	seen := map[string]bool{}
	var read func(p string, depth int) error
	read = func(p string, depth int) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		if depth > 10 {
			return fmt.Errorf("closure: %s: includes nest too deep", p)
		}
		f, err := os.Open(filepath.Join(root, p))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("closure: %w", err)
		}
		defer f.Close()
		ds, includes, err := parseLdSoConf(f)
		if err != nil {
			return fmt.Errorf("closure: %s: %w", p, err)
		}
		dirs = append(dirs, ds...)
		for _, pat := range includes {
			if !path.IsAbs(pat) {
				pat = path.Join(path.Dir(p), pat)
			}
			matches, err := filepath.Glob(filepath.Join(root, pat))
			if err != nil {
				return fmt.Errorf("closure: %s: include %s: %w", p, pat, err)
			}
			// Glob sorts, which is the order ldconfig reads them in.
			for _, m := range matches {
				rel, err := filepath.Rel(root, m)
				if err != nil {
					return err
				}
				if err := read("/"+filepath.ToSlash(rel), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := read("/etc/ld.so.conf", 0); err != nil {
		return nil, err
	}
	return dirs, nil
}

// parseLdSoConf parses one ld.so.conf file: directories (separated like
// ldconfig separates them) and "include" patterns. "hwcap" lines are
// obsolete and skipped.
func parseLdSoConf(r io.Reader) (dirs, includes []string, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.FieldsFunc(line, func(c rune) bool {
			return c == ' ' || c == '\t' || c == ':' || c == ','
		})
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "include":
			includes = append(includes, f[1:]...)
		case "hwcap":
		default:
			for _, d := range f {
				if path.IsAbs(d) {
					dirs = append(dirs, path.Clean(d))
				}
			}
		}
	}
	return dirs, includes, sc.Err()
}
