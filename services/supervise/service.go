package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// service is one supervised service; its goroutine (run) owns its life,
// the Supervisor's mutex guards its status.
type service struct {
	sup        *Supervisor
	spec       Spec // defaults applied
	caps       []uintptr
	deps       []*service
	dependents []*service
	logs       *ring
	cg         Cgroup
	done       chan struct{} // closed when run returns
	restartReq chan struct{} // Restart's request, buffered 1

	// Guarded by sup.mu.
	st ServiceStatus
	// Owned by run.
	failures  int         // consecutive failed runs, for the backoff
	lastStart time.Time   // when the current run started, for the stable-run reset
	restartAt []time.Time // restarts in the breaker's window
	// consoleRate limits the service's lines on the console, across runs;
	// the pipe readers use it under sup.conMu.
	consoleRate rateLimit
}

// set moves the service to state, applying f to its status first.
func (s *service) set(state State, f func(st *ServiceStatus)) {
	sup := s.sup
	now := sup.clock.Now()
	sup.mu.Lock()
	from := s.st.State
	if f != nil {
		f(&s.st)
	}
	s.st.State = state
	if state != from {
		s.st.Since = now
	}
	if state != StateBackoff {
		s.st.NextRestart, s.st.RestartDelay = time.Time{}, 0
	}
	st := s.st
	if st.LastExit != nil {
		e := *st.LastExit
		st.LastExit = &e
	}
	sup.notifyLocked()
	sup.mu.Unlock()
	if state == from {
		return
	}
	sup.log.Debug("service state", "service", s.spec.Name, "from", from.String(), "to", state.String())
	if sup.opts.OnTransition != nil {
		sup.opts.OnTransition(Transition{Service: s.spec.Name, From: from, To: state, At: now, Status: st})
	}
}

// note updates the status without a change of state or a wake-up.
func (s *service) note(f func(st *ServiceStatus)) {
	s.sup.mu.Lock()
	f(&s.st)
	s.sup.mu.Unlock()
}

func (s *service) stopRequested() bool {
	select {
	case <-s.sup.stopping:
		return true
	default:
		return false
	}
}

// run owns the service's life until the supervisor stops: it waits for the
// dependencies, runs and restarts the service by its policy, and once the
// service has ended for good (Exited, Failed) waits for a restart request.
func (s *service) run() {
	defer close(s.done)
	for {
		if s.waitStart() && s.runLoop() {
			return
		}
		select {
		case <-s.restartReq:
			s.failures, s.restartAt = 0, nil
			s.sup.log.Info("service restart requested", "service", s.spec.Name)
			s.set(StateWaiting, func(st *ServiceStatus) { st.Reason = "restart requested" })
		case <-s.sup.stopping:
			return
		}
	}
}

// runLoop runs the service until it ends for good (false) or the
// supervisor stops it (true, its state set to Stopped).
func (s *service) runLoop() (stopped bool) {
	for {
		ex, how := s.runOnce()
		switch how {
		case endStopped:
			s.set(StateStopped, func(st *ServiceStatus) { st.Pid = 0; st.LastExit = &ex })
			return true
		case endRestart:
			// Asked for: no backoff, and it does not count toward the breaker.
			s.set(StateStarting, func(st *ServiceStatus) { st.Pid = 0; st.LastExit = &ex; st.Restarts++ })
			continue
		}
		delay, restart := s.afterExit(ex)
		if !restart {
			return false
		}
		t := s.sup.clock.NewTimer(delay)
		select {
		case <-t.C():
		case <-s.restartReq:
			t.Stop()
		case <-s.sup.stopping:
			t.Stop()
			s.set(StateStopped, nil)
			return true
		}
		if s.stopRequested() {
			s.set(StateStopped, nil)
			return true
		}
	}
}

// How a run ended.
const (
	endExited  = iota // the process ended by itself
	endStopped        // the supervisor stopped it
	endRestart        // stopped because a restart was requested
)

// waitStart waits for the dependencies and conditions; false means the
// service is not to start (stopping, or a required dependency failed) and
// its final state is set.
func (s *service) waitStart() bool {
	required := map[*service]bool{}
	for _, r := range s.spec.Requires {
		required[s.sup.byName[r]] = true
	}
	for {
		sup := s.sup
		sup.mu.Lock()
		var blocker, failed string
		for _, d := range s.deps {
			switch {
			case d.st.satisfied():
			case d.st.terminal() && required[d]:
				failed = fmt.Sprintf("required service %q is %s", d.spec.Name, d.st.State)
			case d.st.terminal():
				// Ordering only: an After dependency that ended is done.
			case blocker == "":
				blocker = d.spec.Name
			}
		}
		ch := sup.changed
		sup.mu.Unlock()

		switch {
		case failed != "":
			sup.log.Error("service not started", "service", s.spec.Name, "reason", failed)
			s.set(StateFailed, func(st *ServiceStatus) { st.Reason = failed })
			return false
		case blocker != "":
			s.note(func(st *ServiceStatus) { st.Reason = "waiting for " + blocker })
			select {
			case <-ch:
				continue
			case <-sup.stopping:
				s.set(StateStopped, nil)
				return false
			}
		}
		unmet := s.unmetCondition()
		if unmet == "" {
			return true
		}
		s.note(func(st *ServiceStatus) { st.Reason = unmet })
		t := sup.clock.NewTimer(sup.opts.ConditionInterval)
		select {
		case <-t.C():
		case <-sup.stopping:
			t.Stop()
			s.set(StateStopped, nil)
			return false
		}
	}
}

// unmetCondition describes the first condition not met, or is "".
func (s *service) unmetCondition() string {
	for _, c := range s.spec.Conditions {
		ok, err := c.Met()
		if err != nil {
			return fmt.Sprintf("condition %s: %v", c.Name(), err)
		}
		if !ok {
			return "condition " + c.Name() + " not met"
		}
	}
	return ""
}

// runOnce starts the service and watches it until its process ends, and
// says why it ended (endExited, endStopped, endRestart).
func (s *service) runOnce() (ex ExitInfo, how int) {
	sup := s.sup
	select {
	case <-s.restartReq: // asked before this start: this start is the restart
	default:
	}
	s.set(StateStarting, func(st *ServiceStatus) { st.Pid = 0; st.Reason = "" })
	s.lastStart = sup.clock.Now()
	cmd, exited, err := s.spawn()
	if err != nil {
		sup.log.Error("service start failed", "service", s.spec.Name, "err", err)
		return ExitInfo{Code: -1, At: sup.clock.Now(), Reason: "start: " + err.Error()}, endExited
	}
	pid := cmd.Process.Pid
	sup.log.Info("service started", "service", s.spec.Name, "pid", pid)
	s.set(StateRunning, func(st *ServiceStatus) { st.Pid = pid; st.Health = HealthResult{} })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	target := Target{Name: s.spec.Name, Pid: pid, Spawner: sup.opts.Spawner}
	ready := make(chan struct{})
	if s.spec.Ready == nil {
		close(ready)
	} else {
		go s.probeReady(ctx, target, ready)
	}
	// The health timer is restarted only after a check's result is in, so
	// checks never overlap and a slow one delays the next.
	var healthTimer Timer
	var healthTick <-chan time.Time
	var health chan error
	stopHealth := func() {
		if healthTimer != nil {
			healthTimer.Stop()
		}
		healthTick, health = nil, nil
	}
	nextHealth := func() {
		healthTimer = sup.clock.NewTimer(s.spec.Health.Interval)
		healthTick = healthTimer.C()
	}
	var reason string
	for {
		select {
		case e := <-exited:
			stopHealth()
			ex := exitInfo(e)
			ex.Reason = reason
			s.cleanup(pid)
			return ex, endExited
		case <-ready:
			ready = nil
			s.set(StateReady, func(st *ServiceStatus) { st.Reason = "" })
			if s.spec.Health != nil {
				nextHealth()
			}
		case <-healthTick:
			healthTick = nil
			health = make(chan error, 1)
			go func(out chan<- error) { out <- check(ctx, s.spec.Health, target) }(health)
		case err := <-health:
			health = nil
			threshold := s.spec.Health.FailureThreshold
			var failures int
			s.note(func(st *ServiceStatus) {
				h := &st.Health
				h.Checked, h.OK = sup.clock.Now(), err == nil
				if err == nil {
					h.Failures, h.Err = 0, ""
				} else {
					h.Failures++
					h.Err = err.Error()
				}
				failures = h.Failures
			})
			if err == nil || failures < threshold {
				nextHealth()
				continue
			}
			sup.log.Error("service unhealthy, stopping it", "service", s.spec.Name, "failures", failures, "err", err)
			reason = fmt.Sprintf("health check failed %d times: %v", failures, err)
			cancel()
			e := s.terminate(pid, exited)
			ex := exitInfo(e)
			ex.Reason = reason
			return ex, endExited
		case <-s.restartReq:
			stopHealth()
			cancel()
			s.set(StateStopping, func(st *ServiceStatus) { st.Reason = "restart requested" })
			ex := exitInfo(s.terminate(pid, exited))
			ex.Reason = "restarted on request"
			return ex, endRestart
		case <-sup.stopping:
			stopHealth()
			cancel()
			for _, d := range s.dependents {
				<-d.done
			}
			s.set(StateStopping, nil)
			return exitInfo(s.terminate(pid, exited)), endStopped
		}
	}
}

// spawn builds the command, with its output piped into the log, and starts it.
func (s *service) spawn() (*exec.Cmd, <-chan Exit, error) {
	if err := s.prepareStateDirs(); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(s.spec.Command[0], s.spec.Command[1:]...)
	cmd.Env = s.spec.Env
	cmd.Dir = s.spec.Dir
	fd := -1
	if s.cg != nil {
		fd = s.cg.FD()
	}
	cmd.SysProcAttr = sysProcAttr(&s.spec, s.caps, fd)
	// A pipe of our own rather than an io.Writer in cmd.Stdout: exec closes
	// its pipes only in Wait, which the supervisor never calls.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	exited, err := spawnIsolated(s.sup.opts.Spawner, cmd, &s.spec, s.caps)
	w.Close()
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	lw := &lineWriter{name: s.spec.Name, ring: s.logs, console: s.sup.opts.Console, conMu: &s.sup.conMu,
		limit: &s.consoleRate, now: s.sup.clock.Now}
	go func() {
		// Ends when every process holding the pipe has exited.
		io.Copy(lw, r)
		lw.flush()
		r.Close()
	}()
	return cmd, exited, nil
}

// prepareStateDirs creates the spec's state directories that are missing
// and hands each to the service's user, mode 0700. A directory that is a
// symlink is refused: the service could have planted it to have PID 1
// chown something else.
func (s *service) prepareStateDirs() error {
	for _, d := range s.spec.StateDirs {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("state directory: %w", err)
		}
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("state directory %s: not a directory (%s)", d, fi.Mode().Type())
		}
		if u := s.spec.User; u != nil {
			if err := os.Lchown(d, int(u.UID), int(u.GID)); err != nil {
				return fmt.Errorf("state directory: %w", err)
			}
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	return nil
}

// terminate stops a running process group: StopSignal, then SIGKILL after
// StopTimeout; it returns the leader's exit.
func (s *service) terminate(pid int, exited <-chan Exit) Exit {
	sup := s.sup
	if err := sup.kill(pid, s.spec.StopSignal); err != nil && !errors.Is(err, syscall.ESRCH) {
		sup.log.Warn("signal service", "service", s.spec.Name, "signal", s.spec.StopSignal.String(), "err", err)
	}
	t := sup.clock.NewTimer(s.spec.StopTimeout)
	select {
	case e := <-exited:
		t.Stop()
		s.cleanup(pid)
		return e
	case <-t.C():
	}
	sup.log.Warn("service did not stop in time, killing it", "service", s.spec.Name, "timeout", s.spec.StopTimeout)
	if err := sup.kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		sup.log.Warn("kill service", "service", s.spec.Name, "err", err)
	}
	return <-exited
}

// cleanup kills what is left of a process group whose leader ended, and of
// the service's cgroup where the group can kill its members (a process that
// left the process group with setsid is still in the cgroup), so no process
// of a service outlives its run.
func (s *service) cleanup(pgid int) {
	if err := s.sup.kill(pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		s.sup.log.Warn("kill leftover processes", "service", s.spec.Name, "err", err)
	}
	if k, ok := s.cg.(interface{ Kill() error }); ok {
		if err := k.Kill(); err != nil {
			s.sup.log.Warn("kill leftover processes in the cgroup", "service", s.spec.Name, "err", err)
		}
	}
}

// probeReady runs the readiness check until it passes, then closes ready.
func (s *service) probeReady(ctx context.Context, t Target, ready chan<- struct{}) {
	p := s.spec.Ready
	for {
		err := check(ctx, p, t)
		if err == nil {
			close(ready)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.note(func(st *ServiceStatus) { st.Reason = "not ready: " + err.Error() })
		tm := s.sup.clock.NewTimer(p.Interval)
		select {
		case <-tm.C():
		case <-ctx.Done():
			tm.Stop()
			return
		}
	}
}

// check runs one attempt of a probe, bounded by its Timeout.
func check(ctx context.Context, p *Probe, t Target) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	if tc, ok := p.Check.(TargetChecker); ok {
		return tc.CheckTarget(ctx, t)
	}
	return p.Check.Check(ctx)
}

// afterExit records an ended run and applies the restart policy and the
// breaker: it gives the delay before the next start, or restart false when
// the service stays down (its final state set).
func (s *service) afterExit(ex ExitInfo) (delay time.Duration, restart bool) {
	sup := s.sup
	now := sup.clock.Now()
	sup.log.Info("service ended", "service", s.spec.Name, "exit", ex.String())
	record := func(st *ServiceStatus) { st.Pid = 0; st.LastExit = &ex }
	switch {
	case s.spec.Restart == Never, s.spec.Restart == OnFailure && ex.Success():
		s.set(StateExited, record)
		return 0, false
	}
	if now.Sub(s.lastStart) >= s.spec.Backoff.ResetAfter {
		s.failures = 0
	}
	window := s.spec.Breaker.Window
	kept := s.restartAt[:0]
	for _, t := range s.restartAt {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	s.restartAt = kept
	if max := s.spec.Breaker.MaxRestarts; max >= 0 && len(s.restartAt) >= max {
		reason := fmt.Sprintf("crash loop: %d restarts within %s", len(s.restartAt), window)
		sup.log.Error("service failed", "service", s.spec.Name, "reason", reason, "exit", ex.String())
		s.set(StateFailed, func(st *ServiceStatus) { record(st); st.Reason = reason })
		return 0, false
	}
	delay = s.spec.Backoff.Delay(s.failures)
	s.failures++
	s.restartAt = append(s.restartAt, now)
	s.set(StateBackoff, func(st *ServiceStatus) {
		record(st)
		st.Restarts++
		st.NextRestart = now.Add(delay)
		st.RestartDelay = delay
		st.Reason = ""
	})
	return delay, true
}
