package kernel

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Index is the module set of a booted image: the modules PID 1 may load,
// what each needs loaded first and the device aliases each drives. It is
// read from the files the builder writes at LoadListPath, DepPath and
// AliasPath.
type Index struct {
	order   []string       // absolute module paths, modules.load order
	byName  map[string]int // normalized module name -> index in order
	deps    [][]int        // index in order -> indexes of its dependencies
	aliases []aliasEntry   // modules.alias order
	// buckets holds the indexes of aliases by their prefix cut to at most
	// bucketKey bytes; keyLens are the cut lengths that occur. A modalias
	// need only be tried against the few buckets its own prefixes name,
	// not against every alias: PID 1 matches a few hundred modaliases
	// against a few thousand aliases each round, under emulation too.
	buckets map[string][]int
	keyLens []int
}

// bucketKey is long enough to tell PCI vendors and devices apart
// ("pci:v00008086d000010D3").
const bucketKey = 22

// aliasEntry is one alias: a pattern in the form path.Match takes.
type aliasEntry struct {
	pattern string
	prefix  string // the pattern's literal start, to skip most patterns cheaply
	module  int
}

// ReadIndex reads the index from the modules.load, modules.dep and
// modules.alias files in dir (the image's /etc/hardvisor).
func ReadIndex(dir string) (*Index, error) {
	var rs []io.Reader
	for _, name := range []string{LoadListPath, DepPath, AliasPath} {
		f, err := os.Open(filepath.Join(dir, path.Base(name)))
		if err != nil {
			return nil, fmt.Errorf("read module index: %w", err)
		}
		defer f.Close()
		rs = append(rs, bufio.NewReader(f))
	}
	ix, err := ParseIndex(rs[0], rs[1], rs[2])
	if err != nil {
		return nil, fmt.Errorf("read module index in %s: %w", dir, err)
	}
	return ix, nil
}

// ParseIndex reads the index from the builder's three files: the load list
// (see ParseLoadList); the dependency file, one "/path/a.ko: /path/b.ko ..."
// line for every module of the load list, naming the modules it needs loaded
// first; and the alias file, "alias PATTERN MODULE" lines as in the kernel's
// modules.alias. Every module the other two files name must be in the load
// list, and dependencies must come before the modules that need them: the
// files are written together, so anything else means they were damaged.
// Errors name the file and line.
func ParseIndex(load, dep, alias io.Reader) (*Index, error) {
	order, err := parseLoadList(load, "modules.load")
	if err != nil {
		return nil, err
	}
	ix := &Index{order: order, byName: map[string]int{}, deps: make([][]int, len(order))}
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
		name := moduleName(p)
		if j, dup := ix.byName[name]; dup {
			return nil, fmt.Errorf("modules.load: module %s at both %s and %s", name, order[j], p)
		}
		ix.byName[name] = i
	}
	if err := ix.parseDeps(dep, pos); err != nil {
		return nil, err
	}
	if err := ix.parseAliases(alias); err != nil {
		return nil, err
	}
	ix.buckets = map[string][]int{}
	for i, a := range ix.aliases {
		k := a.prefix[:min(len(a.prefix), bucketKey)]
		if !slices.Contains(ix.keyLens, len(k)) {
			ix.keyLens = append(ix.keyLens, len(k))
		}
		ix.buckets[k] = append(ix.buckets[k], i)
	}
	sort.Ints(ix.keyLens)
	return ix, nil
}

func (ix *Index) parseDeps(r io.Reader, pos map[string]int) error {
	seen := make([]bool, len(ix.order))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		if !ok {
			return fmt.Errorf("modules.dep line %d: want \"MODULE: DEPENDENCIES\", got %q", line, text)
		}
		i, ok := pos[mod]
		switch {
		case !ok:
			return fmt.Errorf("modules.dep line %d: %s is not in modules.load", line, mod)
		case seen[i]:
			return fmt.Errorf("modules.dep line %d: %s is listed twice", line, mod)
		}
		seen[i] = true
		for _, d := range strings.Fields(rest) {
			j, ok := pos[d]
			switch {
			case !ok:
				return fmt.Errorf("modules.dep line %d: %s needs %s, which is not in modules.load", line, mod, d)
			case j >= i:
				return fmt.Errorf("modules.dep line %d: %s needs %s, which modules.load does not load before it", line, mod, d)
			}
			ix.deps[i] = append(ix.deps[i], j)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("modules.dep line %d: %w", line+1, err)
	}
	for i, ok := range seen {
		if !ok {
			return fmt.Errorf("modules.dep: no line for %s", ix.order[i])
		}
	}
	return nil
}

func (ix *Index) parseAliases(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		var buf [3]string
		f, ok := aliasFields(sc.Text(), &buf)
		if !ok {
			f = strings.Fields(sc.Text())
		}
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "alias" || len(f) != 3 {
			return fmt.Errorf("modules.alias line %d: want \"alias PATTERN MODULE\", got %q", line, strings.TrimSpace(sc.Text()))
		}
		i, ok := ix.byName[normalize(f[2])]
		if !ok {
			return fmt.Errorf("modules.alias line %d: module %s is not in modules.load", line, f[2])
		}
		pattern, prefix, err := compileAlias(f[1])
		if err != nil {
			return fmt.Errorf("modules.alias line %d: %w", line, err)
		}
		ix.aliases = append(ix.aliases, aliasEntry{pattern: pattern, prefix: prefix, module: i})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("modules.alias line %d: %w", line+1, err)
	}
	return nil
}

// Has reports whether the image has the module name ('-' and '_' equal). A
// module built into the kernel is not in the index.
func (ix *Index) Has(name string) bool {
	_, ok := ix.byName[normalize(name)]
	return ok
}

// Match returns the names (normalized) of the modules with an alias that
// matches any of the modaliases (the contents of sysfs modalias files),
// sorted and without repeats. Matching is modprobe's: shell patterns as
// fnmatch takes them, with '-' and '_' equal outside brackets.
func (ix *Index) Match(modaliases []string) []string {
	hit := make([]bool, len(ix.order))
	seen := map[string]bool{}
	for _, m := range modaliases {
		m, err := normalizeAlias(strings.TrimSpace(m))
		if err != nil || m == "" || seen[m] {
			// modprobe refuses a name that does not normalize too; no alias
			// can match it.
			continue
		}
		seen[m] = true
		for _, l := range ix.keyLens {
			if l > len(m) {
				break
			}
			for _, i := range ix.buckets[m[:l]] {
				a := ix.aliases[i]
				if hit[a.module] || !strings.HasPrefix(m, a.prefix) {
					continue
				}
				// compileAlias checked the pattern, so Match cannot fail.
				if ok, _ := path.Match(a.pattern, m); ok {
					hit[a.module] = true
				}
			}
		}
	}
	var out []string
	for i, ok := range hit {
		if ok {
			out = append(out, moduleName(ix.order[i]))
		}
	}
	sort.Strings(out)
	return out
}

// Closure returns the absolute paths of the named modules ('-' and '_'
// equal) and of everything they need, recursively, in load-list order, so
// dependencies come first. Every name the image lacks is named in one
// error.
func (ix *Index) Closure(names []string) ([]string, error) {
	want := make([]bool, len(ix.order))
	var add func(int)
	add = func(i int) {
		if want[i] {
			return
		}
		want[i] = true
		for _, d := range ix.deps[i] {
			add(d)
		}
	}
	var unknown []string
	for _, n := range names {
		i, ok := ix.byName[normalize(n)]
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", n))
			continue
		}
		add(i)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		unknown = slices.Compact(unknown)
		return nil, fmt.Errorf("image has no modules named %s", strings.Join(unknown, ", "))
	}
	var out []string
	for i, ok := range want {
		if ok {
			out = append(out, ix.order[i])
		}
	}
	return out, nil
}

// aliasFields splits a line the way the builder writes it, three fields
// with single spaces between them, into f without allocating; ok is false
// for any other line, which strings.Fields must then split.
func aliasFields(line string, f *[3]string) (fields []string, ok bool) {
	if strings.ContainsAny(line, "\t\r\v\f") {
		return nil, false
	}
	var found bool
	if f[0], line, found = strings.Cut(line, " "); !found {
		return nil, false
	}
	if f[1], f[2], found = strings.Cut(line, " "); !found {
		return nil, false
	}
	if f[0] == "" || f[1] == "" || f[2] == "" || strings.Contains(f[2], " ") {
		return nil, false
	}
	return f[:], true
}

// compileAlias turns a modules.alias pattern into the path.Match pattern
// that matches what modprobe's fnmatch would on a normalized modalias, and
// returns its literal prefix too. Modaliases hold no '/', so path.Match's
// special '/' never matters.
func compileAlias(pattern string) (compiled, prefix string, err error) {
	p, err := normalizeAlias(pattern)
	if err != nil {
		return "", "", err
	}
	// Only a bracket or an escape can make a pattern malformed; PID 1 reads
	// some 1,400 aliases at every boot, most of them plain.
	if strings.ContainsAny(p, `[\`) {
		if _, err := path.Match(p, ""); err != nil {
			return "", "", fmt.Errorf("alias pattern %q: %w", pattern, err)
		}
	}
	prefix = p
	if i := strings.IndexAny(p, `*?[\`); i >= 0 {
		prefix = p[:i]
	}
	return p, prefix, nil
}

// normalizeAlias is kmod's alias_normalize, which modprobe applies to the
// name it looks up and depmod to the patterns it indexes: '-' becomes '_'
// except inside brackets, and brackets must pair. It also spells fnmatch's
// bracket negation "[!" the way path.Match wants it, "[^".
func normalizeAlias(s string) (string, error) {
	if !strings.ContainsAny(s, "-[]") {
		return s, nil
	}
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '-':
			b[i] = '_'
		case ']':
			return "", fmt.Errorf("alias %q: unbalanced brackets", s)
		case '[':
			if i+1 < len(b) && b[i+1] == '!' {
				b[i+1] = '^'
			}
			for i < len(b) && b[i] != ']' {
				i++
			}
			if i == len(b) {
				return "", fmt.Errorf("alias %q: unbalanced brackets", s)
			}
		}
	}
	return string(b), nil
}

// Buses returns the device buses the index's aliases name (the text before an
// alias's first colon, without wildcards: "pci", "virtio", "acpi", "cpu"),
// sorted, so PID 1 reads the modaliases of those buses only.
func (ix *Index) Buses() []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range ix.aliases {
		bus, _, ok := strings.Cut(a.pattern, ":")
		if !ok {
			continue
		}
		bus = strings.TrimRight(bus, "*?")
		if bus != "" && !seen[bus] {
			seen[bus] = true
			out = append(out, bus)
		}
	}
	sort.Strings(out)
	return out
}
