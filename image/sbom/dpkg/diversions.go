package dpkg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Diversion is one entry of dpkg's diversions file: packages other than
// Package that ship From have it installed at To instead. Package is ":" for a
// local diversion (made by the admin), which applies to every package.
type Diversion struct {
	From, To, Package string
}

// ReadDiversions reads the diversions file in the dpkg directory dir. A missing
// file means no diversions.
func ReadDiversions(dir string) ([]Diversion, error) {
	name := filepath.Join(dir, "diversions")
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dpkg diversions: %w", err)
	}
	defer f.Close()
	d, err := ParseDiversions(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

// ParseDiversions parses dpkg's diversions file: groups of three lines (the
// diverted path, where it went, the diverting package).
func ParseDiversions(r io.Reader) ([]Diversion, error) {
	var (
		out  []Diversion
		cur  []string
		line int
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line++
		cur = append(cur, sc.Text())
		if len(cur) == 3 {
			out = append(out, Diversion{From: cur[0], To: cur[1], Package: cur[2]})
			cur = cur[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if len(cur) != 0 {
		return nil, fmt.Errorf("line %d: truncated entry (want 3 lines per diversion, got %d)", line, len(cur))
	}
	return out, nil
}
