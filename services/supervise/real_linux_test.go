package supervise

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a console that tests read while services write.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// realRun starts specs on real processes and the real clock.
func realRun(t *testing.T, specs []Spec, console *syncBuffer) (*Supervisor, *recorder) {
	t.Helper()
	rec := newRecorder()
	opts := Options{Services: specs, Spawner: WaitSpawner{}, OnTransition: rec.on}
	if console != nil {
		opts.Console = console
	}
	sup := New(opts)
	if err := sup.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sup.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return sup, rec
}

func TestRealRestartWithBackoff(t *testing.T) {
	con := &syncBuffer{}
	sup, rec := realRun(t, []Spec{{
		Name:    "once",
		Command: []string{"/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"},
		Backoff: Backoff{Initial: 50 * time.Millisecond, Max: time.Second, Multiplier: 2},
		Breaker: Breaker{MaxRestarts: 2, Window: time.Minute},
	}}, con)
	rec.until(t, sup, "once", StateFailed)
	st := status(t, sup, "once")
	if st.Restarts != 2 || st.LastExit.String() != "exit status 3" {
		t.Errorf("status %+v", st)
	}
	// Backoff → Starting gaps are the delays: 50ms, then 100ms.
	var backoffAt []time.Time
	var gaps []time.Duration
	for _, tr := range rec.transitions() {
		if tr.Service != "once" {
			continue
		}
		switch {
		case tr.To == StateBackoff:
			backoffAt = append(backoffAt, tr.At)
		case tr.From == StateBackoff:
			gaps = append(gaps, tr.At.Sub(backoffAt[len(backoffAt)-1]))
		}
	}
	if len(gaps) != 2 || gaps[0] < 50*time.Millisecond || gaps[1] < 100*time.Millisecond {
		t.Errorf("restart gaps %v, want ≥50ms then ≥100ms", gaps)
	}
	deadline := time.Now().Add(wait)
	for {
		lines, _ := sup.Logs("once", 0)
		if len(lines) == 6 {
			if !slices.Equal(sorted(lines), []string{"hi", "hi", "hi", "oops", "oops", "oops"}) {
				t.Errorf("logs %q", lines)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs %q, want 3 runs' worth", lines)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := strings.Count(con.String(), "once: hi\n"); n != 3 {
		t.Errorf("console has %d 'once: hi' lines:\n%s", n, con)
	}
}

// groupMembers lists the live (not zombie) processes in process group pgid.
func groupMembers(pgid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
			out = append(out, pid)
		}
	}
	return out
}

func TestRealStopKillsProcessGroup(t *testing.T) {
	for _, tt := range []struct {
		name, script string
		wantKill     bool
	}{
		{"term", "sleep 100 & sleep 100", false},
		{"ignores term", `trap "" TERM; sleep 100 & sleep 100`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sup := New(Options{Services: []Spec{{
				Name: "sleepy", Command: []string{"/bin/sh", "-c", tt.script}, StopTimeout: 300 * time.Millisecond,
			}}})
			if err := sup.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			var pid int
			deadline := time.Now().Add(wait)
			for pid == 0 || len(groupMembers(pid)) < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("group %d has %v, want sh and two sleeps", pid, groupMembers(pid))
				}
				time.Sleep(5 * time.Millisecond)
				pid = status(t, sup, "sleepy").Pid
			}
			start := time.Now()
			if err := sup.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			for deadline := time.Now().Add(wait); len(groupMembers(pid)) > 0; {
				if time.Now().After(deadline) {
					t.Fatalf("survivors in group %d: %v", pid, groupMembers(pid))
				}
				time.Sleep(5 * time.Millisecond)
			}
			st := status(t, sup, "sleepy")
			wantSig := syscall.SIGTERM
			if tt.wantKill {
				wantSig = syscall.SIGKILL
				if took < 300*time.Millisecond {
					t.Errorf("killed after %v, before the 300ms stop timeout", took)
				}
			}
			if st.State != StateStopped || st.LastExit.Signal != wantSig {
				t.Errorf("%s, exit %v; want Stopped by %v", st.State, st.LastExit, wantSig)
			}
		})
	}
}

// TestRealIsolation runs a service as nobody with one capability kept, in
// another network namespace.
func TestRealIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: setuid, setns and the bounding set")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) to make a network namespace")
	}
	holder := exec.Command(unshare, "-n", "sleep", "100")
	if err := holder.Start(); err != nil {
		t.Skipf("unshare -n: %v", err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	ns := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
	var want string
	for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
		mine, _ := os.Readlink("/proc/self/ns/net")
		want, _ = os.Readlink(ns)
		if want != "" && want != mine {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare never entered a new network namespace")
		}
	}

	sup, rec := realRun(t, []Spec{{
		Name:            "iso",
		Command:         []string{"/bin/sh", "-c", "grep -E '^Cap(Eff|Bnd|Amb)|^Uid|^NoNewPrivs' /proc/self/status; readlink /proc/self/ns/net"},
		User:            &User{UID: 65534, GID: 65534},
		Capabilities:    []string{"CAP_NET_BIND_SERVICE"},
		NoNewPrivileges: true,
		NetNS:           ns,
		Restart:         Never,
	}}, nil)
	rec.until(t, sup, "iso", StateExited)
	var lines []string
	for deadline := time.Now().Add(wait); len(lines) < 6 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		lines, _ = sup.Logs("iso", 0)
	}
	got := strings.Join(lines, "\n")
	for _, w := range []string{
		"Uid:\t65534\t65534\t65534\t65534",
		"NoNewPrivs:\t1",
		"CapEff:\t0000000000000400",
		"CapBnd:\t0000000000000400",
		"CapAmb:\t0000000000000400",
		want,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("service output lacks %q:\n%s", w, got)
		}
	}
	// No thread of the supervisor's process is left in the service's
	// namespace: the one that started it is gone.
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if ns, _ := os.Readlink(task); ns == want {
			t.Errorf("%s is in the service's namespace", task)
		}
	}
}

func TestExecCheck(t *testing.T) {
	if err := (Exec{Command: []string{"/bin/true"}}).Check(t.Context()); err != nil {
		t.Errorf("true: %v", err)
	}
	if err := (Exec{Command: []string{"/bin/false"}}).Check(t.Context()); err == nil || err.Error() != "exec /bin/false: exit status 1" {
		t.Errorf("false: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := (Exec{Command: []string{"/bin/sleep", "100"}}).CheckTarget(ctx, Target{Spawner: WaitSpawner{}}); err == nil || err.Error() != "exec /bin/sleep 100: context deadline exceeded" {
		t.Errorf("sleep: %v", err)
	}
}

// TestRealStateDirs: a service running as nobody writes to the state
// directory the supervisor made for it (and to nothing else under the same
// parent); a symlink in its place is refused, not followed.
func TestRealStateDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown and setuid")
	}
	parent := t.TempDir()
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(parent, "state", "audit")
	sup, rec := realRun(t, []Spec{{
		Name:      "writer",
		Command:   []string{"/bin/sh", "-c", "echo ok > " + state + "/f && echo made; echo x > " + parent + "/g || echo parent refused"},
		User:      &User{UID: 65534, GID: 65534},
		StateDirs: []string{state},
		Restart:   Never,
	}}, nil)
	rec.until(t, sup, "writer", StateExited)
	var got string
	for deadline := time.Now().Add(wait); !strings.Contains(got, "refused") && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		lines, _ := sup.Logs("writer", 0)
		got = strings.Join(lines, "\n")
	}
	if !strings.HasPrefix(got, "made\n") {
		t.Errorf("service output %q: it could not write its state directory", got)
	}
	if !strings.HasSuffix(got, "parent refused") {
		t.Errorf("service output %q: it could write outside its state directory", got)
	}
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory owned %d:%d mode %v, want 65534:65534 0700", st.Uid, st.Gid, fi.Mode().Perm())
	}

	// A symlink where the state directory should be.
	target := t.TempDir()
	link := filepath.Join(parent, "planted")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	sup2, rec2 := realRun(t, []Spec{{
		Name: "planted", Command: []string{"/bin/true"}, User: &User{UID: 65534, GID: 65534},
		StateDirs: []string{link}, Restart: Never,
	}}, nil)
	rec2.until(t, sup2, "planted", StateExited)
	st := sup2.Status()[0]
	if st.LastExit == nil || !strings.Contains(st.LastExit.Reason, "not a directory") {
		t.Errorf("planted symlink: last exit %+v, want a refused start", st.LastExit)
	}
	if fi, _ := os.Stat(target); fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the symlink's target was chowned")
	}
}
