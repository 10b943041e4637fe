// Package boot is hardvisor's PID 1 boot sequence: an ordered list of steps, each a
// small value with a name, run one after the other. A mandatory step that fails stops
// the boot with a clear console message; an optional one is reported and skipped.
package boot

import (
	"fmt"
	"io"
	"sync"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/init/network"
	"hardvisor.dev/hardvisor/services/status"
	"hardvisor.dev/hardvisor/services/supervise"
)

// Step is one thing PID 1 does while booting.
type Step interface {
	// Run performs the step.
	Run() error
	// String names the step on the console.
	String() string
}

// Optional marks a step whose failure does not stop the boot.
type Optional interface {
	Step
	Optional() bool
}

// Host is the state the boot steps share: what they learned and where they report.
type Host struct {
	// Console receives every line PID 1 prints (all active consoles).
	Console io.Writer
	// Started is when PID 1 started; service lines carry the time since.
	Started time.Time
	// Config is the embedded config, with this machine's hosts[] override applied
	// once the config step has run.
	Config *config.Config
	// Version is the image version, from the config.
	Version string
	// Modules reports what the modules step did.
	Modules ModuleReport
	// Hardening lists every hardening setting with its verified state.
	Hardening []Check
	// DataMounted is where the data partition is mounted; empty when the
	// host runs without persistent state.
	DataMounted string
	// DataBoots counts the boots that mounted the data partition, this one
	// included; 0 without one.
	DataBoots int
	// Supervisor runs the host services once the services step has run.
	Supervisor *supervise.Supervisor
	// Machine says why guests have no room here; empty when they have.
	Machine string
	// Network is what the network step set up.
	Network *network.Applied

	power    chan PowerAction
	modules  *ModuleLoader // the modules step's, for LoadModules
	coldplug chan coldplug // the modules step's loads, until ModulesLoaded
	mu       sync.Mutex
	gate     status.Gate // the health gate's verdict, read by the status server
}

// Logf prints one line on the console, prefixed so it stands out from the kernel's.
func (h *Host) Logf(format string, args ...any) {
	fmt.Fprintf(h.Console, "hardvisor: "+format+"\n", args...)
}

// FailedError is returned by Run when a mandatory step failed.
type FailedError struct {
	Step string
	Err  error
}

func (e *FailedError) Error() string { return fmt.Sprintf("boot step %q failed: %v", e.Step, e.Err) }
func (e *FailedError) Unwrap() error { return e.Err }

// Run runs steps in order. It stops at the first mandatory step that fails and
// returns a *FailedError for it; optional failures are printed and skipped.
// Steps that take longer than a second print their duration.
func Run(h *Host, steps []Step, now func() time.Time) error {
	for _, s := range steps {
		start := now()
		err := s.Run()
		if d := now().Sub(start); d > time.Second {
			h.Logf("step %s took %.1fs", s, d.Seconds())
		}
		if err == nil {
			continue
		}
		if o, ok := s.(Optional); ok && o.Optional() {
			h.Logf("step %s: %v (optional, continuing)", s, err)
			continue
		}
		return &FailedError{Step: s.String(), Err: err}
	}
	return nil
}
