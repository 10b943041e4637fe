package reaper

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSpawnAndOrphans makes the test process a child subreaper, as PID 1 is for
// the whole system: a spawned child's exit status reaches its channel, and a
// grandchild left behind by its parent is reaped and counted as an orphan.
func TestSpawnAndOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become subreaper: %v", err)
	}
	r := Start()
	exited, err := r.Spawn(exec.Command("/bin/sh", "-c", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-exited:
		if !e.Status.Exited() || e.Status.ExitStatus() != 3 {
			t.Errorf("exit = %v, want exit status 3", e.Status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported")
	}

	// sh starts a background sleep and exits at once: the sleep is re-parented
	// to us and must be reaped when it ends.
	exited, err = r.Spawn(exec.Command("/bin/sh", "-c", "sleep 0.2 & exit 0"))
	if err != nil {
		t.Fatal(err)
	}
	<-exited
	deadline := time.Now().Add(10 * time.Second)
	for r.Orphans() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := r.Orphans(); got != 1 {
		t.Errorf("orphans reaped = %d, want 1", got)
	}
}
