package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// ModulesImageDir is where the image keeps modules, one flat directory per
// release (module names are unique within a kernel, and PID 1 frees the
// files once loading is off: removing 68 files from one directory under TCG
// costs a fraction of removing them from the 50 directories of the kernel's
// own tree). The image is merged-/usr like Debian 12, so modules live under
// usr/ and never under a lib/ that another stage may add as a symlink to
// usr/lib.
const ModulesImageDir = "usr/lib/modules"

// ModuleSet is the closure of an allow-list of modules: the module files to
// put in the image and the order to load them in.
type ModuleSet struct {
	// Release is the kernel release the modules were built for.
	Release string
	// Order holds the image paths of the module files
	// ("usr/lib/modules/<release>/virtio_net.ko"), every
	// dependency before the modules that use it. The same input always gives
	// the same order.
	Order []string
	// Builtin names the requested modules that are built into the kernel:
	// already there, nothing to load.
	Builtin []string
	// Optional holds the entries of Order pulled in only as soft dependencies
	// (modules.softdep), such as both crc32c_intel and crc32c_generic for
	// ext4's "pre: crypto-crc32c". Loading them is what modprobe would do,
	// but their init may fail on hardware that lacks a feature
	// (crc32c_intel without SSE4.2) while another provider covers it.
	Optional []string

	sources       map[string]string   // image path -> host path
	builtinSource string              // host path of modules.builtin, if any
	deps          map[string][]string // image path -> image paths to load first
	aliases       []string            // the set's "alias PATTERN MODULE" lines, kernel order
}

// index is a release's modules.dep, modules.builtin and modules.softdep.
type index struct {
	release string
	dir     string
	paths   map[string]string   // module name -> path relative to dir
	deps    map[string][]string // module name -> dependency names, modules.dep order
	builtin map[string]bool
	softdep map[string]softdep
	aliases map[string][]string // loaded on first need; exact aliases only
}

// softdep is one modules.softdep line: modules (or aliases) to load before
// and after a module.
type softdep struct{ pre, post []string }

// Modules resolves an allow-list of module names into the files they need.
// Names match the way modprobe matches them, with '-' and '_' equal. A name
// built into the kernel is satisfied and reported in Builtin. Every name that
// is neither a module nor built in is reported in one error.
func (k *Kernel) Modules(names []string) (*ModuleSet, error) {
	ix, err := loadIndex(k.ModulesDir, k.Release)
	if err != nil {
		return nil, err
	}
	ms, err := ix.resolve(names)
	if err != nil {
		return nil, err
	}
	// modules.dep can outlive the files it names (a half-removed package);
	// better to say so now than when the initramfs is written.
	var missing []string
	for _, p := range ms.Order {
		if _, err := os.Stat(ms.sources[p]); err != nil {
			missing = append(missing, ms.sources[p])
		}
	}
	if len(missing) > 0 {
		hint := ""
		if k.Package != "" {
			hint = ": apt-get install --reinstall " + k.Package
		}
		return nil, fmt.Errorf("kernel %s: modules.dep names missing files %s%s", k.Release, strings.Join(missing, ", "), hint)
	}
	// PID 1 picks what to load by matching these against the hardware, so a
	// kernel without them is unusable rather than merely less complete.
	inSet := map[string]bool{}
	for _, p := range ms.Order {
		inSet[moduleName(p)] = true
	}
	err = withFile(filepath.Join(k.ModulesDir, "modules.alias"), true, func(r io.Reader) (err error) {
		ms.aliases, err = selectAliases(r, inSet)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", k.Release, err)
	}
	return ms, nil
}

func loadIndex(dir, release string) (*index, error) {
	ix := &index{release: release, dir: dir}
	err := withFile(filepath.Join(dir, "modules.dep"), true, func(r io.Reader) (err error) {
		ix.paths, ix.deps, err = parseDep(r, release)
		return err
	})
	if err == nil {
		err = withFile(filepath.Join(dir, "modules.builtin"), false, func(r io.Reader) (err error) {
			ix.builtin, err = parseBuiltin(r)
			return err
		})
	}
	if err == nil {
		err = withFile(filepath.Join(dir, "modules.softdep"), false, func(r io.Reader) (err error) {
			ix.softdep, err = parseSoftdep(r)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", release, err)
	}
	return ix, nil
}

// withFile opens name and hands it to parse, naming the file in errors. An
// optional file that does not exist is skipped.
func withFile(name string, required bool, parse func(io.Reader) error) error {
	f, err := os.Open(name)
	if !required && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := parse(f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// normalize makes a module name comparable the way kmod does: '-' and '_'
// are the same character.
func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleName is the module name of a module file path.
func moduleName(p string) string {
	base := path.Base(p)
	for _, s := range moduleSuffixes {
		if b, ok := strings.CutSuffix(base, s); ok {
			return normalize(b)
		}
	}
	return normalize(base)
}

// parseDep parses modules.dep ("kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko").
// Paths are relative to the release's modules directory; depmod writes
// absolute ones for modules it found elsewhere, which must still lie inside
// it.
func parseDep(r io.Reader, release string) (paths map[string]string, deps map[string][]string, err error) {
	paths, deps = map[string]string{}, map[string][]string{}
	rel := func(p string, line int) (string, error) {
		if !path.IsAbs(p) {
			return path.Clean(p), nil
		}
		for _, root := range []string{"/lib/modules/", "/usr/lib/modules/"} {
			if r, ok := strings.CutPrefix(path.Clean(p), root+release+"/"); ok {
				return r, nil
			}
		}
		return "", fmt.Errorf("line %d: module %s lies outside the modules directory of %s", line, p, release)
	}
	var depPaths = map[string][]string{}
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
		if !ok || !isModuleFile(mod) {
			return nil, nil, fmt.Errorf("line %d: want \"module.ko: deps...\", got %q", line, text)
		}
		p, err := rel(mod, line)
		if err != nil {
			return nil, nil, err
		}
		name := moduleName(p)
		if old, dup := paths[name]; dup {
			return nil, nil, fmt.Errorf("line %d: module %s at both %s and %s", line, name, old, p)
		}
		paths[name] = p
		for _, d := range strings.Fields(rest) {
			dp, err := rel(d, line)
			if err != nil {
				return nil, nil, err
			}
			depPaths[name] = append(depPaths[name], dp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	for name, dps := range depPaths {
		for _, dp := range dps {
			d := moduleName(dp)
			if paths[d] != dp {
				return nil, nil, fmt.Errorf("module %s depends on %s, which has no entry of its own", name, dp)
			}
			deps[name] = append(deps[name], d)
		}
	}
	return paths, deps, nil
}

// parseBuiltin parses modules.builtin: the paths modules would have had, had
// they not been built in.
func parseBuiltin(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		p := strings.TrimSpace(sc.Text())
		if p == "" || p[0] == '#' {
			continue
		}
		if !isModuleFile(p) {
			return nil, fmt.Errorf("line %d: %q is not a module path", line, p)
		}
		out[moduleName(p)] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return out, nil
}

// parseSoftdep parses modules.softdep ("softdep ext4 pre: crypto-crc32c").
// Like kmod, it ignores names before the first "pre:" or "post:" (depmod
// copies MODULE_SOFTDEP strings that lack one verbatim) and comments.
func parseSoftdep(r io.Reader) (map[string]softdep, error) {
	out := map[string]softdep{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "softdep" || len(f) < 2 {
			return nil, fmt.Errorf("line %d: want \"softdep MODULE pre: ... post: ...\", got %q", line, sc.Text())
		}
		name := normalize(f[1])
		sd := out[name]
		var list *[]string
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				list = &sd.pre
			case "post:":
				list = &sd.post
			default:
				if list != nil {
					*list = append(*list, w)
				}
			}
		}
		out[name] = sd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return out, nil
}

// parseAliases parses modules.alias, keeping only aliases without wildcards:
// softdeps name exact aliases ("crypto-crc32c"), never device patterns.
func parseAliases(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	err := scanAliases(r, func(pattern, module string) {
		if strings.ContainsAny(pattern, "*?[") {
			return
		}
		a := normalize(pattern)
		out[a] = append(out[a], normalize(module))
	})
	return out, err
}

// selectAliases returns, in the kernel's order, the modules.alias lines of
// the modules in set (normalized names). Like depmod building
// modules.alias.bin, it drops patterns modprobe cannot use.
func selectAliases(r io.Reader, set map[string]bool) ([]string, error) {
	var out []string
	err := scanAliases(r, func(pattern, module string) {
		if _, _, err := compileAlias(pattern); err == nil && set[normalize(module)] {
			out = append(out, "alias "+pattern+" "+module)
		}
	})
	return out, err
}

// scanAliases calls fn for each line of a modules.alias file.
func scanAliases(r io.Reader, fn func(pattern, module string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "alias" || len(f) != 3 {
			return fmt.Errorf("line %d: want \"alias NAME MODULE\", got %q", line, sc.Text())
		}
		fn(f[1], f[2])
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	return nil
}

// softTargets turns softdep names into the modular modules to load. A name
// satisfied by a built-in module needs nothing; an alias with several
// providers yields all of them, as modprobe loads them all; a name that
// matches nothing is dropped, as modprobe drops it.
func (ix *index) softTargets(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		n = normalize(n)
		switch {
		case ix.paths[n] != "":
			out = append(out, n)
			continue
		case ix.builtin[n]:
			continue
		}
		if ix.aliases == nil {
			ix.aliases = map[string][]string{}
			err := withFile(filepath.Join(ix.dir, "modules.alias"), false, func(r io.Reader) (err error) {
				ix.aliases, err = parseAliases(r)
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		var mods []string
		satisfied := false
		for _, m := range ix.aliases[n] {
			switch {
			case ix.builtin[m]:
				satisfied = true
			case ix.paths[m] != "":
				mods = append(mods, m)
			}
		}
		if satisfied {
			continue
		}
		sort.Strings(mods)
		out = append(out, mods...)
	}
	return out, nil
}

func (ix *index) resolve(names []string) (*ModuleSet, error) {
	var (
		roots   []string
		builtin []string
		unknown []string
		seen    = map[string]bool{}
	)
	for _, n := range names {
		nn := normalize(n)
		if seen[nn] {
			continue
		}
		seen[nn] = true
		switch {
		case nn != "" && ix.paths[nn] != "":
			roots = append(roots, nn)
		case nn != "" && ix.builtin[nn]:
			builtin = append(builtin, nn)
		default:
			unknown = append(unknown, fmt.Sprintf("%q", n))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("kernel %s has no modules named %s (checked modules.dep and modules.builtin in %s)",
			ix.release, strings.Join(unknown, ", "), ix.dir)
	}
	// The allow-list's order in the config must not change the image.
	sort.Strings(roots)
	sort.Strings(builtin)

	const (
		active = 1
		done   = 2
	)
	state := map[string]int{}
	softPre := map[string][]string{} // module -> pre softdeps loaded before it
	var order []string
	var visit func(name string, soft bool) error
	visit = func(name string, soft bool) error {
		switch state[name] {
		case done:
			return nil
		case active:
			if soft {
				// A softdep loop cannot be honoured; modprobe breaks it too.
				return nil
			}
			return fmt.Errorf("kernel %s modules: dependency cycle through %s", ix.release, name)
		}
		state[name] = active
		// modprobe loads modules.dep's list from the end; following it keeps
		// the order what an admin would see from modprobe.
		deps := ix.deps[name]
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], false); err != nil {
				return err
			}
		}
		sd := ix.softdep[name]
		pre, err := ix.softTargets(sd.pre)
		if err != nil {
			return err
		}
		for _, m := range pre {
			if err := visit(m, true); err != nil {
				return err
			}
			// A softdep still being visited is a loop modprobe breaks;
			// recording it would make the dependency file cyclic.
			if state[m] == done && !slices.Contains(ix.deps[name], m) && !slices.Contains(softPre[name], m) {
				softPre[name] = append(softPre[name], m)
			}
		}
		state[name] = done
		order = append(order, name)
		post, err := ix.softTargets(sd.post)
		if err != nil {
			return err
		}
		for _, m := range post {
			if err := visit(m, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := visit(r, false); err != nil {
			return nil, err
		}
	}

	// What the allow-list needs through hard dependencies must load; the
	// rest came in through softdeps.
	required := map[string]bool{}
	var need func(string)
	need = func(n string) {
		if required[n] {
			return
		}
		required[n] = true
		for _, d := range ix.deps[n] {
			need(d)
		}
	}
	for _, r := range roots {
		need(r)
	}

	ms := &ModuleSet{Release: ix.release, Builtin: builtin, sources: map[string]string{}, deps: map[string][]string{}}
	image := func(n string) string { return path.Join(ModulesImageDir, ix.release, path.Base(ix.paths[n])) }
	for _, n := range order {
		rel := ix.paths[n]
		img := image(n)
		ms.Order = append(ms.Order, img)
		var deps []string
		for _, d := range append(slices.Clone(ix.deps[n]), softPre[n]...) {
			deps = append(deps, image(d))
		}
		ms.deps[img] = deps
		ms.sources[img] = filepath.Join(ix.dir, filepath.FromSlash(rel))
		if !required[n] {
			ms.Optional = append(ms.Optional, img)
		}
	}
	if ix.builtin != nil {
		ms.builtinSource = filepath.Join(ix.dir, "modules.builtin")
	}
	return ms, nil
}

// AddTo adds the module files, the kernel's modules.builtin (so tools on the
// host can tell built-in from missing), the load list at LoadListPath and
// what PID 1 needs to pick from it (see ReadIndex): each module's
// dependencies at DepPath and the kernel's aliases of the modules at
// AliasPath.
func (ms *ModuleSet) AddTo(t *rootfs.Tree) error {
	for _, p := range ms.Order {
		if err := t.AddFile(p, ms.sources[p], 0o644); err != nil {
			return fmt.Errorf("add module: %w", err)
		}
	}
	if ms.builtinSource != "" {
		if err := t.AddFile(path.Join(ModulesImageDir, ms.Release, "modules.builtin"), ms.builtinSource, 0o644); err != nil {
			return fmt.Errorf("add modules.builtin: %w", err)
		}
	}
	if err := t.AddData(LoadListPath, formatLoadList(ms.Order), 0o644); err != nil {
		return fmt.Errorf("add module load list: %w", err)
	}
	if err := t.AddData(DepPath, formatDeps(ms.deps), 0o644); err != nil {
		return fmt.Errorf("add module dependencies: %w", err)
	}
	if err := t.AddData(AliasPath, formatAliases(ms.aliases), 0o644); err != nil {
		return fmt.Errorf("add module aliases: %w", err)
	}
	return nil
}
