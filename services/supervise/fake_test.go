package supervise

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"
)

// wait is how long a test waits for something that should happen at once
// (goroutines to get scheduled); the supervisor's own time is the fake clock.
const wait = 5 * time.Second

// fakeClock is a Clock that moves only when Advance is called. Every timer
// made is announced on created, so a test knows what the supervisor waits for.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	created chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), created: make(chan time.Duration, 1000)}
}

type fakeTimer struct {
	c     chan time.Time
	when  time.Time
	clock *fakeClock
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	t := &fakeTimer{c: make(chan time.Time, 1), when: c.now.Add(d), clock: c}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.created <- d
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []*fakeTimer
	for _, t := range c.timers {
		if !t.when.After(c.now) {
			t.c <- c.now
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
}

// nextTimer waits for the supervisor to make a timer and gives its duration.
func (c *fakeClock) nextTimer(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.created:
		return d
	case <-time.After(wait):
		t.Fatal("no timer was made")
		return 0
	}
}

// fakeProc is a process that exists only in the test.
type fakeProc struct {
	name       string
	pid        int
	ignoreTerm bool
	exit       chan Exit
	mu         sync.Mutex
	done       bool
	stdout     *os.File // the child's copy of its output pipe
}

// end makes the process exit with status ws, once.
func (p *fakeProc) end(ws syscall.WaitStatus, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.done = true
	p.stdout.Close()
	p.exit <- Exit{Status: ws, At: at}
	return true
}

func (p *fakeProc) exitCode(code int, at time.Time) { p.end(syscall.WaitStatus(code<<8), at) }

func (p *fakeProc) print(line string) { p.stdout.WriteString(line + "\n") }

// fakeSpawner starts fake processes; onStart says what each does.
type fakeSpawner struct {
	t       *testing.T
	clock   *fakeClock
	mu      sync.Mutex
	nextPid int
	procs   map[int]*fakeProc
	order   []string       // names in start order
	started chan *fakeProc // every start
	kills   []string       // "name SIGNAL" in order
	onStart func(p *fakeProc)
	fail    map[string]error // Spawn errors by name
}

func newFakeSpawner(t *testing.T, c *fakeClock) *fakeSpawner {
	return &fakeSpawner{t: t, clock: c, nextPid: 100, procs: map[int]*fakeProc{}, started: make(chan *fakeProc, 1000)}
}

func (f *fakeSpawner) Spawn(cmd *exec.Cmd) (<-chan Exit, error) {
	name := filepath.Base(cmd.Path)
	f.mu.Lock()
	if err := f.fail[name]; err != nil {
		f.mu.Unlock()
		return nil, err
	}
	// Keep a copy of the output pipe, as a child would; the supervisor
	// closes its own after Spawn.
	out := cmd.Stdout.(*os.File)
	fd, err := syscall.Dup(int(out.Fd()))
	if err != nil {
		f.mu.Unlock()
		return nil, err
	}
	f.nextPid++
	p := &fakeProc{name: name, pid: f.nextPid, exit: make(chan Exit, 1), stdout: os.NewFile(uintptr(fd), "stdout")}
	f.procs[p.pid] = p
	f.order = append(f.order, name)
	onStart := f.onStart
	f.mu.Unlock()
	cmd.Process = &os.Process{Pid: p.pid}
	if onStart != nil {
		onStart(p)
	}
	f.started <- p
	return p.exit, nil
}

// kill is the Options.Kill seam: it signals the fake process group pgid.
func (f *fakeSpawner) kill(pgid int, sig syscall.Signal) error {
	f.mu.Lock()
	p := f.procs[pgid]
	f.mu.Unlock()
	if p == nil {
		return syscall.ESRCH
	}
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done {
		return syscall.ESRCH
	}
	f.mu.Lock()
	f.kills = append(f.kills, p.name+" "+sigName(sig))
	f.mu.Unlock()
	p.mu.Lock()
	ignore := p.ignoreTerm
	p.mu.Unlock()
	if sig == syscall.SIGTERM && ignore {
		return nil
	}
	p.end(syscall.WaitStatus(sig), f.clock.Now())
	return nil
}

func sigName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGKILL:
		return "KILL"
	}
	return s.String()
}

// nextStart waits for the next process start.
func (f *fakeSpawner) nextStart(t *testing.T) *fakeProc {
	t.Helper()
	select {
	case p := <-f.started:
		return p
	case <-time.After(wait):
		t.Fatal("no process was started")
		return nil
	}
}

// noStart checks no process starts for a moment.
func (f *fakeSpawner) noStart(t *testing.T) {
	t.Helper()
	select {
	case p := <-f.started:
		t.Fatalf("%s started unexpectedly", p.name)
	case <-time.After(50 * time.Millisecond):
	}
}

func (f *fakeSpawner) killLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.kills...)
}

// recorder collects transitions per service.
type recorder struct {
	mu  sync.Mutex
	log map[string][]State
	all []Transition
	ch  chan Transition
}

func newRecorder() *recorder {
	return &recorder{log: map[string][]State{}, ch: make(chan Transition, 1000)}
}

func (r *recorder) on(tr Transition) {
	r.mu.Lock()
	if len(r.log[tr.Service]) == 0 {
		r.log[tr.Service] = []State{tr.From}
	}
	r.log[tr.Service] = append(r.log[tr.Service], tr.To)
	r.all = append(r.all, tr)
	r.mu.Unlock()
	r.ch <- tr
}

func (r *recorder) transitions() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.all...)
}

func (r *recorder) states(name string) []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]State(nil), r.log[name]...)
}

// until waits for service name to reach state.
func (r *recorder) until(t *testing.T, sup *Supervisor, name string, state State) {
	t.Helper()
	deadline := time.After(wait)
	for {
		for _, st := range sup.Status() {
			if st.Name == name && st.State == state {
				return
			}
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("%s never reached %s; states %v", name, state, r.states(name))
		}
	}
}

func status(t *testing.T, sup *Supervisor, name string) ServiceStatus {
	t.Helper()
	for _, st := range sup.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no service %q", name)
	return ServiceStatus{}
}

// harness is a supervisor on fakes.
type harness struct {
	clock *fakeClock
	sp    *fakeSpawner
	rec   *recorder
	sup   *Supervisor
}

func newHarness(t *testing.T, specs []Spec, tweak func(*Options)) *harness {
	t.Helper()
	h := &harness{clock: newFakeClock(), rec: newRecorder()}
	h.sp = newFakeSpawner(t, h.clock)
	opts := Options{Services: specs, Clock: h.clock, Spawner: h.sp, Kill: h.sp.kill, OnTransition: h.rec.on}
	if tweak != nil {
		tweak(&opts)
	}
	h.sup = New(opts)
	return h
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	if err := h.sup.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop without the fake clock's help would hang on StopTimeout, so
		// fake processes all die on SIGTERM here.
		h.sp.mu.Lock()
		for _, p := range h.sp.procs {
			p.mu.Lock()
			p.ignoreTerm = false
			p.mu.Unlock()
		}
		h.sp.mu.Unlock()
		done := make(chan error, 1)
		go func() { done <- h.sup.Stop(context.Background()) }()
		deadline := time.After(wait)
		for {
			// Fire any stop timeouts already running.
			h.clock.Advance(time.Hour)
			select {
			case <-done:
				return
			case <-deadline:
				t.Error("Stop hung")
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
}

func sorted(s []string) []string { s = append([]string(nil), s...); sort.Strings(s); return s }
