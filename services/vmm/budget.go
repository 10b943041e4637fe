package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/cgroups"
)

// ErrNoBudget is what the error of a start the memory budget refuses wraps.
var ErrNoBudget = errors.New("does not fit in the host's memory budget")

// memoryCeiling is what a guest may hold in memory: its memory.max.
func memoryCeiling(s config.GuestSpec) config.Size {
	if s.Limits.Memory > 0 {
		return s.Limits.Memory
	}
	return s.Memory + config.GuestOverhead
}

// FitMemory is the runtime half of the budget check (the build checks the
// config): a guest may start only if its memory ceiling and those of the
// guests already running or starting fit in machine/'s memory.max, so that
// no guest is promised memory another one can take. budget < 0 means
// machine/ has no ceiling.
func FitMemory(name string, want config.Size, held config.Size, budget config.Size) error {
	if budget < 0 || held+want <= budget {
		return nil
	}
	return fmt.Errorf("guest %s %w: its ceiling is %s, running guests hold %s of the %s that %s/ allows",
		name, ErrNoBudget, want, held, mib(budget), cgroups.Machine)
}

// mib writes s in whole Mi when it is one, else in Mi to a tenth.
func mib(s config.Size) string {
	if s%config.Mi == 0 {
		return s.String()
	}
	return strconv.FormatFloat(float64(s)/float64(config.Mi), 'f', 1, 64) + "Mi"
}

// machineBudget reads machine/'s memory.max; -1 when it is "max".
func machineBudget(mount string) (config.Size, error) {
	b, err := os.ReadFile(filepath.Join(mount, cgroups.Machine, "memory.max"))
	if err != nil {
		return 0, err
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s/memory.max: %q: %w", cgroups.Machine, v, err)
	}
	return config.Size(n), nil
}

// reserve checks g against the budget and, when it fits, counts it as
// starting until release. The guests running, paused or starting hold
// their ceilings.
func (m *Manager) reserve(g *guest) error {
	if m.opts.SkipCeilings {
		return nil
	}
	budget, err := machineBudget(m.opts.Cgroup)
	if err != nil {
		return fmt.Errorf("guest %s: memory budget: %w", g.g.Spec.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var held config.Size
	for _, o := range m.guests {
		if o != g && (o.starting || o.st.State == "running" || o.st.State == "paused") {
			held += memoryCeiling(o.g.Spec)
		}
	}
	if err := FitMemory(g.g.Spec.Name, memoryCeiling(g.g.Spec), held, budget); err != nil {
		return err
	}
	g.starting = true
	return nil
}

// release ends the reservation reserve made.
func (m *Manager) release(g *guest) {
	m.mu.Lock()
	g.starting = false
	m.mu.Unlock()
}
