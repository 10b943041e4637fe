package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Size is an amount of memory or disk in bytes. In YAML it is written as a
// whole number with an optional unit: binary Ki, Mi, Gi, Ti, Pi, Ei (powers of
// 1024), decimal K, M, G, T, P, E (powers of 1000), or none for plain bytes.
type Size int64

// Binary size units.
const (
	Ki Size = 1 << (10 * (iota + 1)) // Ki is a kibibyte, 1024 bytes.
	Mi                               // Mi is a mebibyte, 1024 Ki.
	Gi                               // Gi is a gibibyte, 1024 Mi.
	Ti                               // Ti is a tebibyte, 1024 Gi.
	Pi                               // Pi is a pebibyte, 1024 Ti.
	Ei                               // Ei is an exbibyte, 1024 Pi.
)

// sizeUnits maps a suffix to its multiplier.
var sizeUnits = map[string]Size{
	"":   1,
	"Ki": Ki, "Mi": Mi, "Gi": Gi, "Ti": Ti, "Pi": Pi, "Ei": Ei,
	"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}

// binaryUnits is the order String tries, largest first.
var binaryUnits = []struct {
	suffix string
	size   Size
}{{"Ei", Ei}, {"Pi", Pi}, {"Ti", Ti}, {"Gi", Gi}, {"Mi", Mi}, {"Ki", Ki}}

// ParseSize parses a size such as "512Mi", "8Gi", "1G", "100M" or "4096".
func ParseSize(s string) (Size, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	unit, ok := sizeUnits[s[i:]]
	if i == 0 || !ok {
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit (Ki, Mi, Gi, Ti, Pi, Ei, K, M, G, T, P, E)", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n) * unit, nil
}

// String gives the size in the largest binary unit that divides it exactly
// ("512Mi"), or in plain bytes when none does ("1000").
func (s Size) String() string {
	if s < 0 {
		// Negation of the smallest int64 overflows; uint64 holds its magnitude.
		return "-" + sizeString(uint64(-(s+1))+1)
	}
	return sizeString(uint64(s))
}

func sizeString(n uint64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range binaryUnits {
		if n%uint64(u.size) == 0 {
			return strconv.FormatUint(n/uint64(u.size), 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10)
}

// MarshalYAML writes the size in its String form, as a plain integer when it
// has no unit.
func (s Size) MarshalYAML() (any, error) {
	str := s.String()
	if n, err := strconv.ParseInt(str, 10, 64); err == nil {
		return n, nil
	}
	return str, nil
}

// UnmarshalYAML reads a size written as ParseSize accepts it.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return fmt.Errorf("expected a size such as 512Mi, got %s", describe(n))
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Percent is a share of one CPU in percent, written "150%" in YAML: 100% is
// one full CPU.
type Percent int

// String gives the percentage with its sign, "150%".
func (p Percent) String() string { return strconv.Itoa(int(p)) + "%" }

// MarshalYAML writes the percentage as String does.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

// UnmarshalYAML reads a percentage written "150%".
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("expected a percentage such as 100%%, got %s", describe(n))
	}
	digits, ok := strings.CutSuffix(n.Value, "%")
	v, err := strconv.ParseUint(digits, 10, 31)
	if !ok || digits == "" || err != nil {
		return fmt.Errorf("invalid percentage %q: want a whole number followed by %%, such as 100%%", n.Value)
	}
	*p = Percent(v)
	return nil
}

// Duration is a span of time, written as Go does ("500ms", "30s", "2m").
type Duration time.Duration

// D gives the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as String does.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration such as 30s; it must not be negative.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("expected a duration such as 30s, got %s", describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q: want a number with a unit (ms, s, m, h), such as 30s", n.Value)
	}
	*d = Duration(v)
	return nil
}
