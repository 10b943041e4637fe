package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"hardvisor.dev/hardvisor/image/selinux"
)

// labeler reads and sets files' SELinux labels (security.selinux); tests
// fake it.
type labeler interface {
	Label(path string) (string, error)
	SetLabel(path, context string) error
}

// relabel gives every existing file below roots the label file_contexts
// names for it, where it has another; a subtree that file_contexts says to
// leave alone (<<none>>: /dev/pts) is skipped. It returns how many files
// it relabeled.
func relabel(fc *selinux.FileContexts, roots []string, l labeler) (int, error) {
	n := 0
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // not in this image, or gone while we walked
				}
				return err
			}
			want, ok := fc.Lookup(p, d.Type())
			if !ok {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			// A device node may go away while the modules step's drivers
			// probe beside this walk: one that is gone needs no label.
			got, err := l.Label(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil && !errors.Is(err, errNoLabel) {
				return fmt.Errorf("read label of %s: %w", p, err)
			}
			if got == want {
				return nil
			}
			if err := l.SetLabel(p, want); errors.Is(err, fs.ErrNotExist) {
				return nil
			} else if err != nil {
				return fmt.Errorf("label %s %s: %w", p, want, err)
			}
			n++
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// errNoLabel is a labeler's answer for a file without a label.
var errNoLabel = errors.New("no label")

// rootsBelow limits roots to dir: the roots inside it, and dir itself when a
// root holds it.
func rootsBelow(roots []string, dir string) []string {
	var out []string
	for _, r := range roots {
		switch {
		case r == dir || strings.HasPrefix(r, dir+"/"):
			out = append(out, r)
		case strings.HasPrefix(dir, r+"/"):
			out = append(out, dir)
		}
	}
	return out
}

// readFileContexts parses the image's file_contexts.
func readFileContexts(p string) (*selinux.FileContexts, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fc, err := selinux.ParseFileContexts(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return fc, nil
}
