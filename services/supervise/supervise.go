// Package supervise is hardvisor's service manager. Services are declared as
// data (Spec); a Supervisor starts them in dependency order, independent ones
// in parallel, each in a process group and cgroup of its own, with its output
// kept in a bounded buffer and forwarded to the console. It restarts them
// with capped exponential backoff that resets after a stable run, marks a
// crash-looping service Failed, checks readiness and health, reports status,
// and stops everything in reverse dependency order with SIGTERM then SIGKILL.
//
// The supervisor never waits for a process: it starts them through a
// Spawner, which in PID 1 is the reaper (so wait4(-1) and the supervisor do
// not race), and learns of each exit once, on the Spawner's channel.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"hardvisor.dev/hardvisor/services/cgroups"
)

// State is where a service is in its life.
type State int

// Service states.
const (
	// StateWaiting is waiting for dependencies or conditions.
	StateWaiting State = iota
	// StateStarting is starting the process.
	StateStarting
	// StateRunning is running, its readiness check not passed yet.
	StateRunning
	// StateReady is running and ready (or running without a readiness check).
	StateReady
	// StateBackoff is ended and waiting to be restarted.
	StateBackoff
	// StateStopping is asked to stop and not ended yet.
	StateStopping
	// StateStopped is stopped by Stop.
	StateStopped
	// StateFailed is not restarted: the crash-loop breaker tripped or a
	// required dependency failed.
	StateFailed
	// StateExited is ended and not restarted, by its restart policy.
	StateExited
)

var stateNames = [...]string{"Waiting", "Starting", "Running", "Ready", "Backoff", "Stopping", "Stopped", "Failed", "Exited"}

// String names the state.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + itoa(int(s)) + ")"
}

// Placer gives each service a cgroup of its own; TreePlacer is the real one.
type Placer interface {
	// Place creates (or updates) the service's group with limits l.
	Place(name string, l cgroups.Limits) (Cgroup, error)
}

// Cgroup is a service's group.
type Cgroup interface {
	// FD is an open directory fd the service's processes are started in.
	FD() int
	// Usage is what the group uses now.
	Usage() (cgroups.Usage, error)
	// Close releases the fd.
	Close() error
}

// Transition is a service's change of state, for Options.OnTransition.
type Transition struct {
	// Service is the service's name.
	Service string
	// From and To are the states.
	From, To State
	// At is when the change happened.
	At time.Time
	// Status is the service's status as the change left it (no usage).
	Status ServiceStatus
}

// Options configure a Supervisor.
type Options struct {
	// Services are the services to run.
	Services []Spec
	// Logger receives the supervisor's own events; default discards.
	Logger *slog.Logger
	// Clock is the time source; default SystemClock.
	Clock Clock
	// Spawner starts processes; default WaitSpawner (PID 1 passes its reaper).
	Spawner Spawner
	// Placer gives services their cgroups; nil runs them in the supervisor's.
	Placer Placer
	// Console receives every line of service output as "name: line"; nil
	// forwards nothing.
	Console io.Writer
	// LogBytes bounds each service's kept output; default DefaultLogBytes.
	LogBytes int
	// FailingLines is how many log lines Failing reports; default 10.
	FailingLines int
	// ConditionInterval is how often unmet conditions are checked; default 500ms.
	ConditionInterval time.Duration
	// Kill signals a process group; default kill(2) of -pgid. A seam for tests.
	Kill func(pgid int, sig syscall.Signal) error
	// OnTransition, when set, is called after every state change, in order
	// for each service, from the service's goroutine.
	OnTransition func(Transition)
}

// Supervisor runs a set of services.
type Supervisor struct {
	opts  Options
	log   *slog.Logger
	clock Clock
	kill  func(int, syscall.Signal) error
	conMu sync.Mutex

	services []*service
	byName   map[string]*service

	stopping chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	started bool
	changed chan struct{} // closed and replaced on every change of status
}

// New makes a supervisor for opts.Services; Start starts them.
func New(opts Options) *Supervisor {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Spawner == nil {
		opts.Spawner = WaitSpawner{}
	}
	if opts.Kill == nil {
		opts.Kill = killGroup
	}
	if opts.LogBytes <= 0 {
		opts.LogBytes = DefaultLogBytes
	}
	if opts.FailingLines <= 0 {
		opts.FailingLines = 10
	}
	if opts.ConditionInterval <= 0 {
		opts.ConditionInterval = 500 * time.Millisecond
	}
	return &Supervisor{
		opts:     opts,
		log:      opts.Logger,
		clock:    opts.Clock,
		kill:     opts.Kill,
		byName:   map[string]*service{},
		stopping: make(chan struct{}),
		changed:  make(chan struct{}),
	}
}

// Start validates the services (see Validate), creates their cgroups and
// starts them: each waits for its dependencies and conditions, independent
// ones start at once and in parallel. It returns once every service is on
// its way; Ready tells when they are ready. ctx bounds Start itself; the
// services run until Stop.
func (sup *Supervisor) Start(ctx context.Context) error {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	if sup.started {
		return errors.New("supervisor: already started")
	}
	if err := Validate(sup.opts.Services); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	now := sup.clock.Now()
	for _, spec := range sup.opts.Services {
		spec := withDefaults(spec)
		caps, _ := capSet(spec.Capabilities) // Validate checked them
		s := &service{
			sup:        sup,
			spec:       spec,
			caps:       caps,
			logs:       newRing(sup.opts.LogBytes),
			done:       make(chan struct{}),
			restartReq: make(chan struct{}, 1),
			st:         ServiceStatus{Name: spec.Name, State: StateWaiting, Since: now, Required: spec.Required},
		}
		sup.services = append(sup.services, s)
		sup.byName[spec.Name] = s
	}
	for _, s := range sup.services {
		for _, d := range deps(s.spec) {
			dep := sup.byName[d]
			s.deps = append(s.deps, dep)
			dep.dependents = append(dep.dependents, s)
		}
	}
	if sup.opts.Placer != nil {
		for _, s := range sup.services {
			if err := ctx.Err(); err != nil {
				sup.closeCgroups()
				return fmt.Errorf("supervisor: %w", err)
			}
			cg, err := sup.opts.Placer.Place(s.spec.Name, s.spec.Cgroup)
			if err != nil {
				sup.closeCgroups()
				return fmt.Errorf("supervisor: service %q: %w", s.spec.Name, err)
			}
			s.cg = cg
		}
	}
	sup.started = true
	for _, s := range sup.services {
		go s.run()
	}
	return nil
}

func (sup *Supervisor) closeCgroups() {
	for _, s := range sup.services {
		if s.cg != nil {
			s.cg.Close()
			s.cg = nil
		}
	}
}

// withDefaults applies the defaults to a spec's zero fields.
func withDefaults(s Spec) Spec {
	s.Backoff = s.Backoff.withDefaults()
	s.Breaker = s.Breaker.withDefaults()
	if s.StopSignal == 0 {
		s.StopSignal = syscall.SIGTERM
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	probe := func(p *Probe, interval time.Duration) *Probe {
		if p == nil {
			return nil
		}
		q := *p
		if q.Interval <= 0 {
			q.Interval = interval
		}
		if q.Timeout <= 0 {
			q.Timeout = 5 * time.Second
		}
		if q.FailureThreshold <= 0 {
			q.FailureThreshold = 3
		}
		return &q
	}
	s.Ready = probe(s.Ready, time.Second)
	s.Health = probe(s.Health, 10*time.Second)
	return s
}

// Stop stops every service, a service only after all that depend on it
// have stopped: each gets its StopSignal, and SIGKILL to its process group
// after its StopTimeout. It returns when all have ended, or with an error
// naming those still running when ctx is done. Services are not started again.
func (sup *Supervisor) Stop(ctx context.Context) error {
	sup.mu.Lock()
	started := sup.started
	sup.mu.Unlock()
	if !started {
		return nil
	}
	sup.stopOnce.Do(func() { close(sup.stopping) })
	var running []string
	for _, s := range sup.services {
		select {
		case <-s.done:
		case <-ctx.Done():
			running = append(running, s.spec.Name)
		}
	}
	if len(running) > 0 {
		return fmt.Errorf("stop: services still running: %s: %w", strings.Join(running, ", "), ctx.Err())
	}
	sup.mu.Lock()
	sup.closeCgroups()
	sup.mu.Unlock()
	return nil
}

// ErrUnknownService is returned for a service name the supervisor does not run.
var ErrUnknownService = errors.New("unknown service")

// Restart asks for a service to be restarted now: a running one gets its
// StopSignal (SIGKILL after its StopTimeout) and starts again at once; one
// waiting in backoff starts at once; one that ended for good (Exited, or
// Failed by the breaker) starts again with its backoff and breaker reset.
// A requested restart is not a failure: no backoff, no breaker count.
func (sup *Supervisor) Restart(name string) error {
	sup.mu.Lock()
	s, started := sup.byName[name], sup.started
	sup.mu.Unlock()
	switch {
	case s == nil:
		return fmt.Errorf("restart %q: %w", name, ErrUnknownService)
	case !started:
		return fmt.Errorf("restart %q: supervisor not started", name)
	}
	select {
	case <-sup.stopping:
		return fmt.Errorf("restart %q: the supervisor is stopping", name)
	default:
	}
	select {
	case s.restartReq <- struct{}{}:
	default: // one is pending already
	}
	return nil
}

// ServiceStatus is a service's state for the status report.
type ServiceStatus struct {
	// Name is the service's name.
	Name string
	// State is where it is.
	State State
	// Since is when it entered State.
	Since time.Time
	// Pid is the main process while it runs, else 0.
	Pid int
	// Restarts counts restarts since Start.
	Restarts int
	// LastExit is how the last run ended; nil before the first end.
	LastExit *ExitInfo
	// NextRestart is when a service in Backoff starts again, RestartDelay
	// the wait its backoff chose.
	NextRestart  time.Time
	RestartDelay time.Duration
	// Reason says what a Waiting service waits for, why a Running one is not
	// ready yet, or why a Failed one failed.
	Reason string
	// Required says the health gate waits for the service.
	Required bool
	// Health is the last periodic health check.
	Health HealthResult
	// Usage is the service's cgroup usage; zero without a Placer.
	Usage cgroups.Usage
}

// HealthResult is the outcome of a service's periodic health checks.
type HealthResult struct {
	// Checked is when the last check ran; zero if none has.
	Checked time.Time
	// OK is the last check's outcome.
	OK bool
	// Failures counts consecutive failures.
	Failures int
	// Err is the last failure's message.
	Err string
}

// Status gives every service's status, in declaration order.
func (sup *Supervisor) Status() []ServiceStatus {
	sup.mu.Lock()
	out := make([]ServiceStatus, len(sup.services))
	cgs := make([]Cgroup, len(sup.services))
	for i, s := range sup.services {
		out[i] = s.st
		if s.st.LastExit != nil {
			e := *s.st.LastExit
			out[i].LastExit = &e
		}
		cgs[i] = s.cg
	}
	sup.mu.Unlock()
	for i, cg := range cgs {
		if cg != nil {
			// A usage read error leaves zeros: status must not fail for it.
			out[i].Usage, _ = cg.Usage()
		}
	}
	return out
}

// Logs gives the last n lines a service printed (all kept when n <= 0).
func (sup *Supervisor) Logs(name string, n int) ([]string, error) {
	sup.mu.Lock()
	s := sup.byName[name]
	sup.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("logs %q: %w", name, ErrUnknownService)
	}
	return s.logs.last(n), nil
}

// satisfied reports whether a service counts as ready for dependents and
// the health gate: ready, or a one-shot that exited successfully.
func (st *ServiceStatus) satisfied() bool {
	return st.State == StateReady || st.State == StateExited && st.LastExit != nil && st.LastExit.Success()
}

// terminal reports whether a service has ended for good without being satisfied.
func (st *ServiceStatus) terminal() bool {
	return st.State == StateFailed || st.State == StateStopped || st.State == StateExited && !st.satisfied()
}

// Ready waits until every Required service is ready (or a one-shot that
// exited successfully). It fails at once when one has ended for good, and
// when ctx is done, naming the services that are not ready.
func (sup *Supervisor) Ready(ctx context.Context) error {
	for {
		sup.mu.Lock()
		var waiting, dead []string
		for _, s := range sup.services {
			switch {
			case !s.spec.Required || s.st.satisfied():
			case s.st.terminal():
				dead = append(dead, s.spec.Name)
			default:
				waiting = append(waiting, s.spec.Name)
			}
		}
		started, ch := sup.started, sup.changed
		sup.mu.Unlock()
		switch {
		case !started:
			return errors.New("not ready: supervisor not started")
		case len(dead) > 0:
			return fmt.Errorf("not ready: required services ended: %s", strings.Join(dead, ", "))
		case len(waiting) == 0:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s: %w", strings.Join(waiting, ", "), ctx.Err())
		}
	}
}

// Failing reports each Required service that is not ready: its name, state
// and why, then its last log lines, indented, one report per service.
func (sup *Supervisor) Failing() []string {
	var out []string
	for _, st := range sup.Status() {
		if !st.Required || st.satisfied() {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", st.Name, st.State)
		var why []string
		if st.Reason != "" {
			why = append(why, st.Reason)
		}
		if st.LastExit != nil {
			why = append(why, "last exit: "+st.LastExit.String())
		}
		if st.Restarts > 0 {
			why = append(why, fmt.Sprintf("%d restarts", st.Restarts))
		}
		if len(why) > 0 {
			b.WriteString(" (" + strings.Join(why, "; ") + ")")
		}
		lines, _ := sup.Logs(st.Name, sup.opts.FailingLines)
		for _, l := range lines {
			b.WriteString("\n    " + l)
		}
		out = append(out, b.String())
	}
	return out
}

// notify wakes everything waiting for a change; call with mu held.
func (sup *Supervisor) notifyLocked() {
	close(sup.changed)
	sup.changed = make(chan struct{})
}

func itoa(n int) string { return fmt.Sprint(n) }
