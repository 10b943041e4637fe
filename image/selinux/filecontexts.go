package selinux

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// FileContext is one line of file_contexts: paths matching Regex (anchored
// at both ends), of the file type Kind, get Context.
type FileContext struct {
	// Regex is the path pattern as written.
	Regex string
	// Kind is the file type: "" for any, else "--" (regular file), "-d",
	// "-c", "-b", "-l", "-s" or "-p".
	Kind string
	// Context is the label; empty for <<none>> (leave the file alone).
	Context string

	re      *regexp.Regexp
	literal bool
}

// FileContexts is a parsed file_contexts.
type FileContexts struct {
	specs []FileContext
}

// kinds maps file_contexts' type flags to file mode types.
var kinds = map[string]fs.FileMode{
	"--": 0, "-d": fs.ModeDir, "-c": fs.ModeCharDevice | fs.ModeDevice, "-b": fs.ModeDevice,
	"-l": fs.ModeSymlink, "-s": fs.ModeSocket, "-p": fs.ModeNamedPipe,
}

// ParseFileContexts reads file_contexts ("regex [kind] context" a line).
func ParseFileContexts(r io.Reader) (*FileContexts, error) {
	fc := &FileContexts{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var s FileContext
		switch len(f) {
		case 2:
			s = FileContext{Regex: f[0], Context: f[1]}
		case 3:
			s = FileContext{Regex: f[0], Kind: f[1], Context: f[2]}
			if _, ok := kinds[s.Kind]; !ok {
				return nil, fmt.Errorf("file_contexts line %d: unknown file type %q", n, s.Kind)
			}
		default:
			return nil, fmt.Errorf("file_contexts line %d: want \"regex [type] context\", got %q", n, line)
		}
		if s.Context == "<<none>>" {
			s.Context = ""
		}
		re, err := regexp.Compile("^(?:" + s.Regex + ")$")
		if err != nil {
			return nil, fmt.Errorf("file_contexts line %d: %w", n, err)
		}
		s.re = re
		_, s.literal = literalPrefix(s.Regex)
		fc.specs = append(fc.specs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return fc, nil
}

// Specs returns the lines in file order.
func (fc *FileContexts) Specs() []FileContext { return slices.Clone(fc.specs) }

// Lookup gives the label of path p, a file of mode's type, as libselinux
// does: the last matching line wins, a line without regular expression
// characters before any with. ok is false when no line matches or the
// match says <<none>>.
func (fc *FileContexts) Lookup(p string, mode fs.FileMode) (context string, ok bool) {
	for _, literal := range []bool{true, false} {
		for i := len(fc.specs) - 1; i >= 0; i-- {
			s := fc.specs[i]
			if s.literal != literal || !s.re.MatchString(p) {
				continue
			}
			if s.Kind != "" && kinds[s.Kind] != mode.Type()&^fs.ModeIrregular {
				continue
			}
			return s.Context, s.Context != ""
		}
	}
	return "", false
}

// Roots gives the paths a relabel must walk: for each line that names a
// part of the tree (every line but a catch-all such as "/.*"), the
// directory its pattern is confined to, or the file it names. Roots below
// another root are left out.
func (fc *FileContexts) Roots() []string {
	var roots []string
	for _, s := range fc.specs {
		if s.Context == "" {
			continue
		}
		if r := root(s.Regex); r != "/" {
			roots = append(roots, r)
		}
	}
	slices.Sort(roots)
	roots = slices.Compact(roots)
	var out []string
	for _, r := range roots {
		if len(out) > 0 && within(r, out[len(out)-1]) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// root is the part of the tree a pattern can match: the path itself when it
// is literal, the directory before a "(/.*)?"-style suffix, else the
// directory holding the literal prefix.
func root(re string) string {
	prefix, literal := literalPrefix(re)
	if literal {
		return path.Clean(prefix)
	}
	if rest := re[len(escapedPrefix(re)):]; strings.HasPrefix(rest, "(/") && prefix != "" {
		return path.Clean(prefix)
	}
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		return prefix[:i]
	}
	return "/"
}

const metaChars = `.^$?*+|[({\`

// literalPrefix gives the path the pattern starts with (escapes resolved),
// dropping a character a quantifier makes optional, and whether that is
// all of the pattern.
func literalPrefix(re string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(re); i++ {
		c := re[i]
		if c == '\\' && i+1 < len(re) && !isAlnum(re[i+1]) {
			b.WriteByte(re[i+1])
			i++
			continue
		}
		if strings.IndexByte(metaChars, c) >= 0 {
			s := b.String()
			if (c == '?' || c == '*' || c == '{') && s != "" {
				s = s[:len(s)-1]
			}
			return s, false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// escapedPrefix is the literal prefix of re as written (escapes kept).
func escapedPrefix(re string) string {
	for i := 0; i < len(re); i++ {
		c := re[i]
		if c == '\\' && i+1 < len(re) && !isAlnum(re[i+1]) {
			i++
			continue
		}
		if strings.IndexByte(metaChars, c) >= 0 {
			return re[:i]
		}
	}
	return re
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
