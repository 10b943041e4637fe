package supervise

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Validate checks a set of service specs: names unique and non-empty, a
// command each, dependencies that exist and form no cycle, capabilities
// known, state directories absolute, SELinux labels well formed. It reports
// every problem at once, naming the services, and is what the builder runs
// to refuse a bad config before it reaches a host.
func Validate(specs []Spec) error {
	var errs []error
	index := map[string]int{}
	for i, s := range specs {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("service %d: no name", i))
			continue
		case strings.ContainsAny(s.Name, "/ \t\n") || s.Name == "." || s.Name == "..":
			errs = append(errs, fmt.Errorf("service %q: name must be a single path element without spaces", s.Name))
		}
		if _, dup := index[s.Name]; dup {
			errs = append(errs, fmt.Errorf("service %q: declared twice", s.Name))
			continue
		}
		index[s.Name] = i
	}
	for _, s := range specs {
		if s.Name == "" {
			continue
		}
		if len(s.Command) == 0 || s.Command[0] == "" {
			errs = append(errs, fmt.Errorf("service %q: no command", s.Name))
		}
		for _, d := range deps(s) {
			if _, ok := index[d]; !ok {
				errs = append(errs, fmt.Errorf("service %q: depends on unknown service %q", s.Name, d))
			} else if d == s.Name {
				errs = append(errs, fmt.Errorf("service %q: depends on itself", s.Name))
			}
		}
		for _, d := range s.StateDirs {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
				errs = append(errs, fmt.Errorf("service %q: state directory %q: want a clean absolute path below /", s.Name, d))
			}
		}
		if _, err := capSet(s.Capabilities); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", s.Name, err))
		}
		if s.SELinuxLabel != "" && !validLabel(s.SELinuxLabel) {
			errs = append(errs, fmt.Errorf("service %q: SELinux label %q: want user:role:type:level", s.Name, s.SELinuxLabel))
		}
		if s.Health != nil && s.Health.Check == nil || s.Ready != nil && s.Ready.Check == nil {
			errs = append(errs, fmt.Errorf("service %q: probe without a check", s.Name))
		}
		if err := s.Cgroup.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("service %q: cgroup: %w", s.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if cycle := findCycle(specs, index); cycle != nil {
		return fmt.Errorf("dependency cycle: %s", strings.Join(cycle, " -> "))
	}
	return nil
}

// validLabel reports whether l looks like an SELinux context: user, role,
// type and a level (which has colons of its own, s0:c1,c2), none empty.
func validLabel(l string) bool {
	parts := strings.SplitN(l, ":", 4)
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t\n") {
			return false
		}
	}
	return true
}

// deps is a service's dependencies, Requires then After, without repeats.
func deps(s Spec) []string {
	var out []string
	for _, d := range slices.Concat(s.Requires, s.After) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// findCycle gives the first dependency cycle found searching in declaration
// order, as a path that starts and ends at the same service, or nil.
func findCycle(specs []Spec, index map[string]int) []string {
	const (
		unseen = iota
		onPath
		done
	)
	mark := make([]int, len(specs))
	var path []string
	var visit func(i int) []string
	visit = func(i int) []string {
		mark[i] = onPath
		path = append(path, specs[i].Name)
		for _, d := range deps(specs[i]) {
			j := index[d]
			switch mark[j] {
			case onPath:
				start := slices.Index(path, d)
				return append(slices.Clone(path[start:]), d)
			case unseen:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = done
		return nil
	}
	for i := range specs {
		if mark[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// Order gives the services in start waves: each wave depends only on
// earlier ones, and the services of a wave start in parallel. Names keep
// declaration order within a wave.
func Order(specs []Spec) ([][]string, error) {
	if err := Validate(specs); err != nil {
		return nil, err
	}
	level := map[string]int{}
	var depth func(s Spec) int
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	depth = func(s Spec) int {
		if l, ok := level[s.Name]; ok {
			return l
		}
		l := 0
		for _, d := range deps(s) {
			l = max(l, depth(byName[d])+1)
		}
		level[s.Name] = l
		return l
	}
	var waves [][]string
	for _, s := range specs {
		l := depth(s)
		for len(waves) <= l {
			waves = append(waves, nil)
		}
		waves[l] = append(waves[l], s.Name)
	}
	return waves, nil
}
