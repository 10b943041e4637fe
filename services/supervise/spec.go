package supervise

import (
	"context"
	"syscall"
	"time"

	"hardvisor.dev/hardvisor/services/cgroups"
)

// Spec declares one service as data: what to run, what it needs, how to tell
// it is ready and healthy, and what to do when it ends.
type Spec struct {
	// Name is unique among services; it names the cgroup and prefixes the
	// service's log lines.
	Name string
	// Command is the program and its arguments; Command[0] is an absolute
	// path or is looked up in PATH.
	Command []string
	// Env is the environment, "KEY=value" each; nil inherits the supervisor's.
	Env []string
	// Dir is the working directory; empty is the supervisor's.
	Dir string
	// After are services this one starts after: each must be ready, or have
	// ended, first. Ordering only: one that fails does not hold this back.
	After []string
	// Requires are services this one needs: it starts once each is ready (or
	// exited successfully) and is marked Failed if one fails.
	Requires []string
	// Conditions must all be met before the service starts; they are polled
	// until they are (a data partition mounted, a NIC up).
	Conditions []Condition
	// Ready tells when the service is ready; nil means ready once started.
	Ready *Probe
	// Health is checked periodically once the service is ready; after
	// FailureThreshold consecutive failures the service is stopped and its
	// restart policy applies as for a failed exit.
	Health *Probe
	// Restart says when the service is started again after it ends.
	Restart RestartPolicy
	// Backoff spaces restarts; zero fields take DefaultBackoff's.
	Backoff Backoff
	// Breaker stops a crash loop; zero fields take DefaultBreaker's.
	Breaker Breaker
	// User is who the service runs as; nil is the supervisor's own user.
	User *User
	// Capabilities are the capabilities the service keeps, by name
	// ("CAP_NET_BIND_SERVICE" or "net_bind_service"); all others are dropped
	// from its bounding set (and, for a non-root User, it gets exactly these
	// as ambient capabilities). nil keeps the supervisor's; empty drops all.
	Capabilities []string
	// NoNewPrivileges sets no_new_privs: exec of a setuid binary or one with
	// file capabilities gains nothing.
	NoNewPrivileges bool
	// StateDirs are directories (absolute paths) the service writes its
	// state to. Before each start the supervisor creates any that is
	// missing and gives it to User with mode 0700, so a service without
	// root can own its state and nothing else.
	StateDirs []string
	// SELinuxLabel is the SELinux context the service runs in
	// ("system_u:system_r:hv_mgmt_t:s0"): the policy must let the
	// supervisor's domain transition to it with the program as entrypoint
	// (and, with NoNewPrivileges, allow the nnp_transition). Empty keeps the
	// supervisor's own context.
	SELinuxLabel string
	// NetNS is the path of a network namespace (/run/netns/mgmt) the service
	// runs in; empty is the supervisor's.
	NetNS string
	// Cgroup are the limits of the service's group hardvisor.slice/<Name>;
	// zero fields take cgroups.DefaultLimits.
	Cgroup cgroups.Limits
	// StopSignal asks the service to stop; default SIGTERM.
	StopSignal syscall.Signal
	// StopTimeout is how long the service has after StopSignal before its
	// process group is killed with SIGKILL; default DefaultStopTimeout.
	StopTimeout time.Duration
	// Required makes the service part of the health gate: Ready waits for it.
	Required bool
}

// User is the identity a service runs as.
type User struct {
	// UID and GID are the numeric user and group IDs.
	UID, GID uint32
	// Groups are the supplementary groups; none when empty.
	Groups []uint32
}

// RestartPolicy says when a service that ended is started again.
type RestartPolicy int

// Restart policies.
const (
	// Always restarts the service however it ended (the zero value: host
	// services are daemons).
	Always RestartPolicy = iota
	// OnFailure restarts it unless it exited with status 0.
	OnFailure
	// Never leaves it ended; a one-shot task.
	Never
)

// String names the policy as config spells it.
func (p RestartPolicy) String() string {
	switch p {
	case Always:
		return "always"
	case OnFailure:
		return "on-failure"
	case Never:
		return "never"
	}
	return "RestartPolicy(" + itoa(int(p)) + ")"
}

// Backoff is capped exponential backoff between restarts: the n-th restart
// in a row waits Initial*Multiplier^(n-1), at most Max. A run that lasted
// ResetAfter or longer starts the sequence again at Initial.
type Backoff struct {
	// Initial is the first delay.
	Initial time.Duration
	// Max caps the delay.
	Max time.Duration
	// Multiplier grows the delay, at least 1.
	Multiplier float64
	// ResetAfter is how long a run must last to count as stable.
	ResetAfter time.Duration
}

// DefaultBackoff is 100ms doubling up to 10s, reset after 30s of stable run.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, ResetAfter: 30 * time.Second}

// withDefaults fills zero fields from DefaultBackoff.
func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultBackoff.Multiplier
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = DefaultBackoff.ResetAfter
	}
	return b
}

// Delay is the wait before restart number n (0-based) of a run of failures.
func (b Backoff) Delay(n int) time.Duration {
	d := float64(b.Initial)
	for range n {
		d *= b.Multiplier
		if d >= float64(b.Max) {
			return b.Max
		}
	}
	return min(time.Duration(d), b.Max)
}

// Breaker is the crash-loop breaker: a service that would be restarted more
// than MaxRestarts times within Window is marked Failed instead and left so.
type Breaker struct {
	// MaxRestarts is the number of restarts allowed within Window; a
	// negative value disables the breaker.
	MaxRestarts int
	// Window is the sliding time window the restarts are counted in.
	Window time.Duration
}

// DefaultBreaker allows 5 restarts a minute.
var DefaultBreaker = Breaker{MaxRestarts: 5, Window: time.Minute}

func (b Breaker) withDefaults() Breaker {
	if b.MaxRestarts == 0 {
		b.MaxRestarts = DefaultBreaker.MaxRestarts
	}
	if b.Window <= 0 {
		b.Window = DefaultBreaker.Window
	}
	return b
}

// DefaultStopTimeout is how long a service has to stop before SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// Probe is a readiness or health check and how often it runs.
type Probe struct {
	// Check is the check; see the Checker implementations in this package.
	Check Checker
	// Interval is the time between attempts; default 1s for readiness, 10s
	// for health.
	Interval time.Duration
	// Timeout bounds one attempt; default 5s.
	Timeout time.Duration
	// FailureThreshold is the number of consecutive health failures that
	// stop the service; default 3. Readiness is retried until it passes.
	FailureThreshold int
}

// Checker is a readiness or health check.
type Checker interface {
	// Check returns nil when the service is ready (healthy), an error saying
	// why not otherwise. It must return when ctx is done.
	Check(ctx context.Context) error
}

// TargetChecker is a Checker that can look at the service's own process:
// the supervisor calls CheckTarget instead of Check when a check implements it.
type TargetChecker interface {
	Checker
	// CheckTarget checks the running service t.
	CheckTarget(ctx context.Context, t Target) error
}

// Target is the running service a TargetChecker looks at.
type Target struct {
	// Name is the service's name.
	Name string
	// Pid is the service's main process (its process group leader).
	Pid int
	// Spawner starts processes the way the supervisor does, so a check that
	// runs a command does not race PID 1's reaper.
	Spawner Spawner
}

// Condition is something that must hold before a service starts.
type Condition interface {
	// Name describes the condition in reports ("mounted /var/lib/hardvisor").
	Name() string
	// Met reports whether the condition holds; an error is reported and the
	// condition checked again later.
	Met() (bool, error)
}
