package supervise

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/services/cgroups"
)

func svc(name string, mod ...func(*Spec)) Spec {
	s := Spec{Name: name, Command: []string{"/fake/" + name}}
	for _, m := range mod {
		m(&s)
	}
	return s
}

func after(d ...string) func(*Spec)    { return func(s *Spec) { s.After = d } }
func requires(d ...string) func(*Spec) { return func(s *Spec) { s.Requires = d } }
func policy(p RestartPolicy) func(*Spec) {
	return func(s *Spec) { s.Restart = p }
}
func required(s *Spec) { s.Required = true }

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	var got []time.Duration
	for n := range 7 {
		got = append(got, b.Delay(n))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("delays = %v, want %v", got, want)
	}
	if d := (Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 1.5}).Delay(2); d != 2250*time.Millisecond {
		t.Errorf("1.5x delay(2) = %v, want 2.25s", d)
	}
}

// TestLifecycle walks one service through start → ready → exit → backoff →
// restart, with the exact backoff sequence, capped, and its reset after a
// stable run.
func TestLifecycle(t *testing.T) {
	h := newHarness(t, []Spec{svc("a", func(s *Spec) {
		s.Backoff = Backoff{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, Multiplier: 2, ResetAfter: 5 * time.Second}
		s.Breaker = Breaker{MaxRestarts: -1}
	})}, nil)
	h.start(t)
	var delays []time.Duration
	for range 5 {
		p := h.sp.nextStart(t)
		h.rec.until(t, h.sup, "a", StateReady)
		p.exitCode(1, h.clock.Now())
		d := h.clock.nextTimer(t)
		delays = append(delays, d)
		st := status(t, h.sup, "a")
		if st.State != StateBackoff || !st.NextRestart.Equal(h.clock.Now().Add(d)) {
			t.Fatalf("after exit: state %s next restart %v, want Backoff at now+%v", st.State, st.NextRestart, d)
		}
		h.clock.Advance(d)
	}
	if want := []time.Duration{100e6, 200e6, 400e6, 400e6, 400e6}; !slices.Equal(delays, want) {
		t.Errorf("backoff = %v, want %v", delays, want)
	}
	// A stable run resets the sequence.
	p := h.sp.nextStart(t)
	h.rec.until(t, h.sup, "a", StateReady)
	h.clock.Advance(5 * time.Second)
	p.exitCode(2, h.clock.Now())
	if d := h.clock.nextTimer(t); d != 100*time.Millisecond {
		t.Errorf("after a stable run: delay %v, want 100ms", d)
	}
	st := status(t, h.sup, "a")
	if st.Restarts != 6 || st.LastExit == nil || st.LastExit.Code != 2 || !st.LastExit.At.Equal(h.clock.Now()) {
		t.Errorf("status = %+v, want 6 restarts, last exit 2 now", st)
	}
	want := []State{StateWaiting, StateStarting, StateRunning, StateReady, StateBackoff, StateStarting}
	if got := h.rec.states("a"); !slices.Equal(got[:6], want) {
		t.Errorf("transitions = %v, want %v…", got, want)
	}
}

func TestBreaker(t *testing.T) {
	h := newHarness(t, []Spec{
		svc("loop", func(s *Spec) { s.Breaker = Breaker{MaxRestarts: 3, Window: time.Minute} }),
		svc("steady"),
	}, nil)
	h.sp.onStart = func(p *fakeProc) {
		if p.name == "loop" {
			p.exitCode(1, h.clock.Now())
		}
	}
	h.start(t)
	for range 3 {
		h.clock.Advance(h.clock.nextTimer(t))
	}
	h.rec.until(t, h.sup, "loop", StateFailed)
	st := status(t, h.sup, "loop")
	if st.Restarts != 3 || st.Reason != "crash loop: 3 restarts within 1m0s" || st.LastExit.String() != "exit status 1" {
		t.Errorf("loop: restarts %d reason %q exit %v", st.Restarts, st.Reason, st.LastExit)
	}
	h.clock.Advance(time.Hour)
	h.sp.mu.Lock()
	n := 0
	for _, name := range h.sp.order {
		if name == "loop" {
			n++
		}
	}
	h.sp.mu.Unlock()
	if n != 4 {
		t.Errorf("loop started %d times, want 4 (1 + 3 restarts)", n)
	}
	h.rec.until(t, h.sup, "steady", StateReady)
	if st := status(t, h.sup, "steady"); st.State != StateReady || st.Pid == 0 {
		t.Errorf("steady: %s pid %d, want Ready and running", st.State, st.Pid)
	}
	if got := status(t, h.sup, "loop").State; got != StateFailed {
		t.Errorf("loop later: %s, want Failed", got)
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, tt := range []struct {
		policy RestartPolicy
		code   int
		want   State
	}{
		{Always, 0, StateBackoff},
		{Always, 1, StateBackoff},
		{OnFailure, 0, StateExited},
		{OnFailure, 1, StateBackoff},
		{Never, 0, StateExited},
		{Never, 1, StateExited},
	} {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.code), func(t *testing.T) {
			h := newHarness(t, []Spec{svc("a", policy(tt.policy))}, nil)
			h.start(t)
			p := h.sp.nextStart(t)
			h.rec.until(t, h.sup, "a", StateReady)
			p.exitCode(tt.code, h.clock.Now())
			h.rec.until(t, h.sup, "a", tt.want)
			if st := status(t, h.sup, "a"); st.LastExit == nil || st.LastExit.Code != tt.code {
				t.Errorf("last exit %v, want code %d", st.LastExit, tt.code)
			}
		})
	}
}

func TestSignalExitAndStartError(t *testing.T) {
	h := newHarness(t, []Spec{svc("a")}, nil)
	h.sp.fail = map[string]error{"a": errors.New("no such file")}
	h.start(t)
	h.rec.until(t, h.sup, "a", StateBackoff)
	if st := status(t, h.sup, "a"); st.LastExit.String() != "start: no such file" {
		t.Errorf("last exit %q", st.LastExit)
	}
	h.sp.mu.Lock()
	h.sp.fail = nil
	h.sp.mu.Unlock()
	h.clock.Advance(h.clock.nextTimer(t))
	p := h.sp.nextStart(t)
	h.rec.until(t, h.sup, "a", StateReady)
	p.end(syscall.WaitStatus(syscall.SIGSEGV), h.clock.Now())
	h.rec.until(t, h.sup, "a", StateBackoff)
	if st := status(t, h.sup, "a"); st.LastExit.String() != "killed by signal 11 (segmentation fault)" {
		t.Errorf("last exit %q", st.LastExit)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name  string
		specs []Spec
		want  string
	}{
		{"unknown", []Spec{svc("a", requires("db")), svc("b", after("a", "x"))},
			"service \"a\": depends on unknown service \"db\"\nservice \"b\": depends on unknown service \"x\""},
		{"cycle", []Spec{svc("a", requires("b")), svc("b", after("c")), svc("c", requires("a")), svc("d")},
			"dependency cycle: a -> b -> c -> a"},
		{"cycle deeper", []Spec{svc("x"), svc("a", requires("x", "b")), svc("b", requires("c")), svc("c", after("b"))},
			"dependency cycle: b -> c -> b"},
		{"self", []Spec{svc("a", after("a"))}, "service \"a\": depends on itself"},
		{"dup and empty", []Spec{svc("a"), svc("a"), {Name: "c"}},
			"service \"a\": declared twice\nservice \"c\": no command"},
		{"caps", []Spec{svc("a", func(s *Spec) { s.Capabilities = []string{"CAP_NET_ADMIN", "cap_flying"} })},
			"service \"a\": unknown capability \"cap_flying\""},
		{"state dirs", []Spec{svc("a", func(s *Spec) { s.StateDirs = []string{"/var/lib/a", "rel", "/x/../y"} })},
			"service \"a\": state directory \"rel\": want a clean absolute path below /\n" +
				"service \"a\": state directory \"/x/../y\": want a clean absolute path below /"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.specs)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Validate = %v\nwant %s", err, tt.want)
			}
			if err := New(Options{Services: tt.specs}).Start(t.Context()); err == nil || err.Error() != "supervisor: "+tt.want {
				t.Errorf("Start = %v", err)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	specs := []Spec{svc("app", requires("db", "net")), svc("db", requires("data")), svc("net"), svc("data"), svc("log")}
	got, err := Order(specs)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"net", "data", "log"}, {"db"}, {"app"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Order = %v, want %v", got, want)
	}
}

// gate is a readiness check the test opens.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

func (g *gate) Check(ctx context.Context) error {
	select {
	case <-g.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestStartOrder: data and net start at once and in parallel (data's
// readiness holds nothing of net's), db waits for data, app for both.
func TestStartOrder(t *testing.T) {
	dataReady, netReady := newGate(), newGate()
	h := newHarness(t, []Spec{
		svc("app", requires("db"), after("net")),
		svc("db", requires("data")),
		svc("data", func(s *Spec) { s.Ready = &Probe{Check: dataReady, Timeout: time.Hour} }),
		svc("net", func(s *Spec) { s.Ready = &Probe{Check: netReady, Timeout: time.Hour} }),
	}, nil)
	h.start(t)
	first := []string{h.sp.nextStart(t).name, h.sp.nextStart(t).name}
	if got := sorted(first); !slices.Equal(got, []string{"data", "net"}) {
		t.Fatalf("first starts %v, want data and net", got)
	}
	h.sp.noStart(t)
	if st := status(t, h.sup, "app"); st.State != StateWaiting || st.Reason != "waiting for db" {
		t.Errorf("app: %s %q", st.State, st.Reason)
	}
	dataReady.open()
	if p := h.sp.nextStart(t); p.name != "db" {
		t.Fatalf("third start %s, want db", p.name)
	}
	h.rec.until(t, h.sup, "db", StateReady)
	h.sp.noStart(t) // app still waits for net
	netReady.open()
	if p := h.sp.nextStart(t); p.name != "app" {
		t.Fatalf("fourth start %s, want app", p.name)
	}
}

func TestRequiredDependencyFails(t *testing.T) {
	h := newHarness(t, []Spec{
		svc("base", policy(Never), func(s *Spec) { s.Ready = &Probe{Check: newGate(), Timeout: time.Hour} }),
		svc("hard", requires("base")),
		svc("soft", after("base")),
	}, nil)
	h.start(t)
	p := h.sp.nextStart(t)
	p.exitCode(1, h.clock.Now())
	h.rec.until(t, h.sup, "hard", StateFailed)
	if st := status(t, h.sup, "hard"); st.Reason != `required service "base" is Exited` {
		t.Errorf("hard: %q", st.Reason)
	}
	if p := h.sp.nextStart(t); p.name != "soft" {
		t.Errorf("started %s, want soft", p.name)
	}
}

func TestConditions(t *testing.T) {
	var mu sync.Mutex
	met := false
	cond := condFunc{"mounted /data", func() (bool, error) { mu.Lock(); defer mu.Unlock(); return met, nil }}
	h := newHarness(t, []Spec{svc("a", func(s *Spec) { s.Conditions = []Condition{cond} })}, func(o *Options) {
		o.ConditionInterval = time.Second
	})
	h.start(t)
	if d := h.clock.nextTimer(t); d != time.Second {
		t.Fatalf("condition poll %v", d)
	}
	if st := status(t, h.sup, "a"); st.State != StateWaiting || st.Reason != "condition mounted /data not met" {
		t.Errorf("a: %s %q", st.State, st.Reason)
	}
	mu.Lock()
	met = true
	mu.Unlock()
	h.clock.Advance(time.Second)
	h.sp.nextStart(t)
}

type condFunc struct {
	name string
	f    func() (bool, error)
}

func (c condFunc) Name() string       { return c.name }
func (c condFunc) Met() (bool, error) { return c.f() }

func TestStopReverseOrder(t *testing.T) {
	h := newHarness(t, []Spec{svc("base"), svc("mid", requires("base")), svc("top", after("mid")), svc("side", requires("base"))}, nil)
	h.start(t)
	for range 4 {
		h.sp.nextStart(t)
	}
	for _, n := range []string{"base", "mid", "top", "side"} {
		h.rec.until(t, h.sup, n, StateReady)
	}
	if err := h.sup.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	var terms []string
	for _, k := range h.sp.killLog() {
		if name, ok := strings.CutSuffix(k, " TERM"); ok {
			terms = append(terms, name)
		}
	}
	pos := func(n string) int { return slices.Index(terms, n) }
	if len(terms) != 4 || pos("top") > pos("mid") || pos("mid") > pos("base") || pos("side") > pos("base") {
		t.Errorf("stop order %v: want top before mid before base, side before base", terms)
	}
	for _, st := range h.sup.Status() {
		if st.State != StateStopped || st.Pid != 0 || st.LastExit.Signal != syscall.SIGTERM {
			t.Errorf("%s: %s pid %d exit %v", st.Name, st.State, st.Pid, st.LastExit)
		}
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	h := newHarness(t, []Spec{svc("stubborn", func(s *Spec) { s.StopTimeout = 3 * time.Second })}, nil)
	h.sp.onStart = func(p *fakeProc) { p.ignoreTerm = true }
	h.start(t)
	h.sp.nextStart(t)
	h.rec.until(t, h.sup, "stubborn", StateReady)
	done := make(chan error, 1)
	go func() { done <- h.sup.Stop(t.Context()) }()
	if d := h.clock.nextTimer(t); d != 3*time.Second {
		t.Fatalf("stop timeout %v", d)
	}
	if got := h.sp.killLog(); !slices.Equal(got, []string{"stubborn TERM"}) {
		t.Errorf("before the deadline: %v", got)
	}
	h.clock.Advance(3 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := h.sp.killLog(); !slices.Equal(got, []string{"stubborn TERM", "stubborn KILL"}) {
		t.Errorf("signals %v, want TERM then KILL", got)
	}
	if st := status(t, h.sup, "stubborn"); st.LastExit.String() != "killed by signal 9 (killed)" {
		t.Errorf("exit %v", st.LastExit)
	}
}

func TestStopDeadline(t *testing.T) {
	h := newHarness(t, []Spec{svc("stubborn")}, nil)
	h.sp.onStart = func(p *fakeProc) { p.ignoreTerm = true }
	h.start(t)
	h.sp.nextStart(t)
	h.rec.until(t, h.sup, "stubborn", StateReady)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := h.sup.Stop(ctx)
	if err == nil || err.Error() != "stop: services still running: stubborn: context deadline exceeded" {
		t.Errorf("Stop = %v", err)
	}
}

func TestRing(t *testing.T) {
	r := newRing(20)
	for i := range 10 {
		r.add(fmt.Sprintf("line%d", i)) // 6 bytes each with the newline
	}
	if got := r.last(0); !slices.Equal(got, []string{"line7", "line8", "line9"}) {
		t.Errorf("kept %v", got)
	}
	if got := r.last(2); !slices.Equal(got, []string{"line8", "line9"}) {
		t.Errorf("last 2 = %v", got)
	}
	r.add(strings.Repeat("x", 50)) // longer than the budget: kept alone
	if got := r.last(0); len(got) != 1 || len(got[0]) != 50 {
		t.Errorf("after a long line: %q", got)
	}

	var con strings.Builder
	now := time.Unix(1000, 0)
	lw := &lineWriter{name: "svc", ring: newRing(1 << 20), console: &con, conMu: &sync.Mutex{},
		limit: &rateLimit{}, now: func() time.Time { return now }}
	lw.Write([]byte("one\ntw"))
	lw.Write([]byte("o\r\nthree"))
	lw.Write([]byte(strings.Repeat("y", maxLine+5) + "\n"))
	lw.flush()
	want := "svc: one\nsvc: two\nsvc: three" + strings.Repeat("y", maxLine-5) + "\nsvc: yyyyyyyyyy\n"
	if con.String() != want {
		t.Errorf("console:\n%q\nwant\n%q", con.String(), want)
	}

	// A flood: the burst reaches the console, the rest only the log, until
	// time refills the bucket and the console is told what it missed.
	con.Reset()
	for i := range ConsoleBurst + 50 {
		fmt.Fprintf(lw, "flood %d\n", i)
	}
	if n := strings.Count(con.String(), "\n"); n != ConsoleBurst-4 {
		t.Errorf("flood: %d lines on the console, want the rest of the burst, %d", n, ConsoleBurst-4)
	}
	if got := lw.ring.last(1); got[0] != fmt.Sprintf("flood %d", ConsoleBurst+49) {
		t.Errorf("log kept %q last, want every line", got)
	}
	con.Reset()
	now = now.Add(time.Second / ConsoleRate)
	fmt.Fprintf(lw, "after\n")
	if want := "svc: (54 lines not shown on the console; the service's log has them)\nsvc: after\n"; con.String() != want {
		t.Errorf("after the flood:\n%q\nwant\n%q", con.String(), want)
	}
}

// failing is a check that always fails with its message.
type failing string

func (f failing) Check(context.Context) error { return errors.New(string(f)) }

func TestReadyAndFailing(t *testing.T) {
	h := newHarness(t, []Spec{
		svc("api", required, func(s *Spec) {
			s.Ready = &Probe{Check: failing("dial tcp 127.0.0.1:8443: connection refused"), Interval: time.Second}
		}),
		svc("setup", required, policy(Never)),
		svc("extra"),
	}, func(o *Options) { o.FailingLines = 2 })
	h.sp.onStart = func(p *fakeProc) {
		switch p.name {
		case "api":
			p.print("starting")
			p.print("loading certs")
			p.print("bind: address already in use")
		case "setup":
			p.exitCode(0, h.clock.Now())
		}
	}
	h.start(t)
	if d := h.clock.nextTimer(t); d != time.Second {
		t.Fatalf("readiness retry %v", d)
	}
	h.rec.until(t, h.sup, "setup", StateExited)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := h.sup.Ready(ctx); err == nil || err.Error() != "not ready: api: context deadline exceeded" {
		t.Errorf("Ready = %v", err)
	}
	deadline := time.Now().Add(wait)
	for {
		lines, _ := h.sup.Logs("api", 0)
		if len(lines) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	got := h.sup.Failing()
	want := []string{"api: Running (not ready: dial tcp 127.0.0.1:8443: connection refused)\n    loading certs\n    bind: address already in use"}
	if !slices.Equal(got, want) {
		t.Errorf("Failing =\n%q\nwant\n%q", got, want)
	}
}

func TestReadyPasses(t *testing.T) {
	g := newGate()
	h := newHarness(t, []Spec{svc("a", required, func(s *Spec) { s.Ready = &Probe{Check: g, Timeout: time.Hour} }), svc("b", required)}, nil)
	h.start(t)
	done := make(chan error, 1)
	go func() { done <- h.sup.Ready(t.Context()) }()
	select {
	case err := <-done:
		t.Fatalf("Ready before a is ready: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := h.sup.Failing(); len(got) != 0 {
		t.Errorf("Failing = %q", got)
	}
}

func TestReadyFailsFastOnFailed(t *testing.T) {
	h := newHarness(t, []Spec{svc("a", required, func(s *Spec) { s.Breaker = Breaker{MaxRestarts: 1, Window: time.Minute} })}, nil)
	h.sp.onStart = func(p *fakeProc) { p.exitCode(1, h.clock.Now()) }
	h.start(t)
	h.clock.Advance(h.clock.nextTimer(t))
	h.rec.until(t, h.sup, "a", StateFailed)
	if err := h.sup.Ready(t.Context()); err == nil || err.Error() != "not ready: required services ended: a" {
		t.Errorf("Ready = %v", err)
	}
	if got := h.sup.Failing(); !slices.Equal(got, []string{"a: Failed (crash loop: 1 restarts within 1m0s; last exit: exit status 1; 1 restarts)"}) {
		t.Errorf("Failing = %q", got)
	}
}

// flaky fails its health check after it has passed ok times.
type flaky struct {
	mu sync.Mutex
	ok int
}

func (f *flaky) Check(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok > 0 {
		f.ok--
		return nil
	}
	return errors.New("no answer")
}

func TestHealth(t *testing.T) {
	h := newHarness(t, []Spec{svc("a", func(s *Spec) {
		s.Health = &Probe{Check: &flaky{ok: 1}, Interval: 10 * time.Second, FailureThreshold: 2}
		s.StopTimeout = 7 * time.Second
	})}, nil)
	h.start(t)
	h.sp.nextStart(t)
	h.rec.until(t, h.sup, "a", StateReady)
	for i := range 3 {
		if d := h.clock.nextTimer(t); d != 10*time.Second {
			t.Fatalf("health interval %v", d)
		}
		h.clock.Advance(10 * time.Second)
		if i == 1 {
			deadline := time.Now().Add(wait)
			for status(t, h.sup, "a").Health.Failures != 1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if hr := status(t, h.sup, "a").Health; hr.OK || hr.Err != "no answer" || !hr.Checked.Equal(h.clock.Now()) {
				t.Errorf("health after one failure: %+v", hr)
			}
		}
	}
	if d := h.clock.nextTimer(t); d != 7*time.Second {
		t.Fatalf("stop timeout %v, want 7s", d)
	}
	if d := h.clock.nextTimer(t); d != 100*time.Millisecond {
		t.Fatalf("backoff %v", d)
	}
	st := status(t, h.sup, "a")
	if st.State != StateBackoff || st.LastExit.String() != "health check failed 2 times: no answer: killed by signal 15 (terminated)" {
		t.Errorf("a: %s, exit %q", st.State, st.LastExit)
	}
	if got := h.sp.killLog(); !slices.Equal(got, []string{"a TERM"}) {
		t.Errorf("signals %v", got)
	}
}

func TestLogsUnknown(t *testing.T) {
	h := newHarness(t, []Spec{svc("a")}, nil)
	h.start(t)
	if _, err := h.sup.Logs("b", 1); !errors.Is(err, ErrUnknownService) || err.Error() != `logs "b": unknown service` {
		t.Errorf("Logs = %v", err)
	}
	if err := h.sup.Restart("b"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("Restart = %v", err)
	}
}

// TestRestartRequested: a running service asked to restart gets SIGTERM and
// starts again at once (no backoff timer), counted as a restart but not as
// a failure; one the breaker failed starts again with its breaker reset.
func TestRestartRequested(t *testing.T) {
	h := newHarness(t, []Spec{
		svc("api"),
		svc("loop", func(s *Spec) { s.Breaker = Breaker{MaxRestarts: 1, Window: time.Minute} }),
	}, nil)
	crash := true
	var mu sync.Mutex
	h.sp.onStart = func(p *fakeProc) {
		mu.Lock()
		defer mu.Unlock()
		if p.name == "loop" && crash {
			p.exitCode(1, h.clock.Now())
		}
	}
	h.start(t)
	h.rec.until(t, h.sup, "api", StateReady)
	first := status(t, h.sup, "api").Pid
	if err := h.sup.Restart("api"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for status(t, h.sup, "api").Restarts == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h.rec.until(t, h.sup, "api", StateReady)
	if got := h.rec.states("api"); !slices.Equal(got, []State{StateWaiting, StateStarting, StateRunning, StateReady, StateStopping, StateStarting, StateRunning, StateReady}) {
		t.Errorf("api states %v", got)
	}
	st := status(t, h.sup, "api")
	if st.Pid == first || st.Restarts != 1 || st.LastExit == nil || st.LastExit.Reason != "restarted on request" {
		t.Errorf("api after restart: pid %d (was %d), restarts %d, last exit %v", st.Pid, first, st.Restarts, st.LastExit)
	}
	if !slices.Contains(h.sp.killLog(), "api TERM") {
		t.Errorf("kills %v, want api TERM", h.sp.killLog())
	}

	h.clock.Advance(h.clock.nextTimer(t)) // loop's one allowed restart
	h.rec.until(t, h.sup, "loop", StateFailed)
	mu.Lock()
	crash = false
	mu.Unlock()
	if err := h.sup.Restart("loop"); err != nil {
		t.Fatal(err)
	}
	h.rec.until(t, h.sup, "loop", StateReady)
	if st := status(t, h.sup, "loop"); st.Pid == 0 || st.Reason != "" {
		t.Errorf("loop after restart: %+v", st)
	}
}

type fakeCgroup struct{ closed bool }

func (c *fakeCgroup) FD() int { return 77 }
func (c *fakeCgroup) Usage() (cgroups.Usage, error) {
	return cgroups.Usage{Memory: 4096, PIDs: 3, CPU: 1500 * time.Millisecond}, nil
}
func (c *fakeCgroup) Close() error { c.closed = true; return nil }

type fakePlacer struct {
	placed map[string]cgroups.Limits
	groups []*fakeCgroup
	fail   string
}

func (p *fakePlacer) Place(name string, l cgroups.Limits) (Cgroup, error) {
	if name == p.fail {
		return nil, errors.New("mkdir: read-only file system")
	}
	p.placed[name] = l
	g := &fakeCgroup{}
	p.groups = append(p.groups, g)
	return g, nil
}

func TestCgroupPlacement(t *testing.T) {
	pl := &fakePlacer{placed: map[string]cgroups.Limits{}}
	h := newHarness(t, []Spec{svc("a", func(s *Spec) { s.Cgroup = cgroups.Limits{MemoryMax: 64 << 20} })}, func(o *Options) { o.Placer = pl })
	var attr *syscall.SysProcAttr
	spawn := h.sp
	h.sup.opts.Spawner = spawnFunc(func(cmd *exec.Cmd) (<-chan Exit, error) { attr = cmd.SysProcAttr; return spawn.Spawn(cmd) })
	h.start(t)
	h.rec.until(t, h.sup, "a", StateReady)
	if attr == nil || !attr.UseCgroupFD || attr.CgroupFD != 77 || !attr.Setpgid {
		t.Errorf("SysProcAttr = %+v, want the cgroup fd 77 and a process group", attr)
	}
	if got := pl.placed["a"]; got.MemoryMax != 64<<20 {
		t.Errorf("placed with %+v", got)
	}
	if u := status(t, h.sup, "a").Usage; u != (cgroups.Usage{Memory: 4096, PIDs: 3, CPU: 1500 * time.Millisecond}) {
		t.Errorf("usage %+v", u)
	}
	if err := h.sup.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !pl.groups[0].closed {
		t.Error("group not closed after Stop")
	}

	bad := New(Options{Services: []Spec{svc("x"), svc("y")}, Placer: &fakePlacer{placed: map[string]cgroups.Limits{}, fail: "y"}})
	if err := bad.Start(t.Context()); err == nil || err.Error() != `supervisor: service "y": mkdir: read-only file system` {
		t.Errorf("Start = %v", err)
	}
}

type spawnFunc func(cmd *exec.Cmd) (<-chan Exit, error)

func (f spawnFunc) Spawn(cmd *exec.Cmd) (<-chan Exit, error) { return f(cmd) }
