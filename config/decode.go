package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder fills a Config from a yaml.Node tree by hand rather than with
// yaml.Node.Decode, so that it can report every problem, not just the first,
// and remember the line of each field for the checks that follow.
type decoder struct {
	file string
	errs Errors
	// lines holds the line of every field present and not null, by path.
	lines map[string]int
	// bad holds the paths that failed to decode; checks skip them and
	// everything under them, so one mistake gives one error.
	bad map[string]bool
	// visits counts decoded nodes against maxVisits: without aliases each
	// node is visited once, so only an alias bomb reaches the limit.
	visits, maxVisits int
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse is Parse with the default module list as a parameter, so that the
// embedded default can be parsed without it.
func parse(name string, data []byte, modules func() []string) (*Config, error) {
	d := &decoder{file: name, lines: map[string]int{}, bad: map[string]bool{}}
	root, err := d.document(data)
	if err != nil {
		return nil, err
	}
	c := new(Config)
	d.maxVisits = 2*countNodes(root) + 10000
	d.lines[""] = root.Line
	d.decode("", root, reflect.ValueOf(c).Elem())
	if d.has("kernel.modules") && c.Kernel.Modules == nil {
		// An explicit empty list loads nothing; only an absent one defaults.
		c.Kernel.Modules = []string{}
	}
	d.checkExplicitZeros(c)
	c.normalize(modules)
	d.validate(c)
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return c, nil
}

// document reads the one YAML document in data and gives its top node.
func (d *decoder) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: d.file, Msg: "empty config"}}
		}
		return nil, Errors{d.syntaxError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, Errors{d.syntaxError(err)}
		}
		return nil, Errors{{File: d.file, Line: extra.Line, Msg: "more than one YAML document"}}
	}
	if len(doc.Content) == 0 {
		return nil, Errors{{File: d.file, Msg: "empty config"}}
	}
	return doc.Content[0], nil
}

func (d *decoder) syntaxError(err error) *FieldError {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: d.file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &FieldError{File: d.file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// errorf records a problem with the field at path.
func (d *decoder) errorf(path, format string, args ...any) {
	if d.isBad(path) {
		return
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: d.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fail records that the node at path could not be decoded.
func (d *decoder) fail(path string, line int, format string, args ...any) {
	if d.isBad(path) {
		return
	}
	d.bad[path] = true
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// has reports whether the field at path was given.
func (d *decoder) has(path string) bool {
	_, ok := d.lines[path]
	return ok
}

// line gives the line of the field at path or, when it is absent, of its
// closest present parent.
func (d *decoder) line(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parent(path)
	}
}

func (d *decoder) isBad(path string) bool {
	for {
		if d.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parent(path)
	}
}

// parent strips the last ".name" or "[i]" from path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode fills v from the node n for the field at path.
func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	// Errors point at where a value is used, which for an alias is not
	// where its anchor is.
	line := n.Line
	if n = d.resolve(n); n != nil {
		d.decodeNode(path, line, n, v)
	}
}

// decodeNode is decode once aliases are resolved; line is where the value
// is used.
func (d *decoder) decodeNode(path string, line int, n *yaml.Node, v reflect.Value) {
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(path, line, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.decodeNode(path, line, n, e.Elem())
		v.Set(e)
	case reflect.String:
		if !isStringScalar(n) {
			d.fail(path, line, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.fail(path, line, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.fail(path, line, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, line, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			ipath := index(path, i)
			d.lines[ipath] = item.Line
			e := reflect.New(v.Type().Elem()).Elem()
			if r := d.resolve(item); r != nil && r.ShortTag() == "!!null" {
				d.fail(ipath, item.Line, "empty list item")
			} else {
				d.decode(ipath, item, e)
			}
			v.Set(reflect.Append(v, e))
		}
	case reflect.Struct:
		d.decodeStruct(path, line, n, v)
	default:
		panic("config: cannot decode into " + v.Type().String())
	}
}

// decodeStruct fills the struct v from the mapping n, field by field.
func (d *decoder) decodeStruct(path string, line int, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, line, "expected a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := d.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			return
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			msg := "expected a field name, got " + describe(k)
			if k.ShortTag() == "!!merge" {
				msg = "merge keys (<<) are not supported"
			}
			d.errs = append(d.errs, &FieldError{File: d.file, Line: k.Line, Path: path, Msg: msg})
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			d.errs = append(d.errs, &FieldError{File: d.file, Line: k.Line, Path: path,
				Msg: fmt.Sprintf("duplicate field %q (first on line %d)", name, first)})
			continue
		}
		seen[name] = k.Line
		f, ok := fields.index[name]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := suggest(name, fields.names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errs = append(d.errs, &FieldError{File: d.file, Line: k.Line, Path: path, Msg: msg})
			continue
		}
		if r := d.resolve(val); r == nil || r.ShortTag() == "!!null" {
			continue // null is the same as absent
		}
		fpath := join(path, name)
		d.lines[fpath] = k.Line
		d.decode(fpath, val, v.Field(f))
	}
}

// resolve follows aliases and counts the visit; nil means the document is
// too large once its aliases are expanded, which has been reported.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	d.visits++
	if d.visits == d.maxVisits {
		d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line, Msg: "too many alias expansions"})
		d.bad[""] = true // what was decoded is partial: check none of it
	}
	if d.visits >= d.maxVisits {
		return nil
	}
	// The parser rejects alias cycles, but a chain is bounded by the document.
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isStringScalar reports whether n is a scalar that may be read as a string:
// plain scalars that YAML would type as numbers, booleans or timestamps are
// taken as written, as hostnames like 1234 or versions like 1.10 need.
func isStringScalar(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return true
	}
	return false
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "null"
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	default:
		return "a value tagged " + tag
	}
}

type structFields struct {
	index map[string]int // yaml name -> field index
	names []string       // yaml names in field order
}

// fieldsOf lists the yaml names of a struct's fields.
func fieldsOf(t reflect.Type) structFields {
	fs := structFields{index: map[string]int{}}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fs.index[name] = i
		fs.names = append(fs.names, name)
	}
	return fs
}

// suggest gives the known name closest to an unknown one, if close enough to
// be a typo.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(name), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // no typo is that long
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
