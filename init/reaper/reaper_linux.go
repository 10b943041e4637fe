// Package reaper is PID 1's child reaper. Every process whose parent dies is
// re-parented to PID 1 (libvirt double-forks QEMU), so PID 1 must wait for all of
// them or they stay zombies. The supervisor's own children are reaped here too:
// it starts them through Spawn, which registers the pid under the reaper's lock
// so an exit can never be reaped before its owner is known, and gets their exit
// on a channel instead of calling Wait itself.
package reaper

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/services/spawn"
)

// Reaper reaps every child of the process it runs in.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]waiter
	// orphans counts the exits of processes nobody spawned through us.
	orphans int
}

var _ spawn.Spawner = (*Reaper)(nil)

// Start begins reaping on SIGCHLD.
func Start() *Reaper {
	r := &Reaper{waiters: map[int]waiter{}}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGCHLD)
	go func() {
		for range sig {
			r.reap()
		}
	}()
	return r
}

// reap collects every exited child; SIGCHLDs coalesce, so it loops until none is left.
func (r *Reaper) reap() {
	for {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, &ru)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		w, ok := r.waiters[pid]
		delete(r.waiters, pid)
		if !ok {
			r.orphans++
		}
		r.mu.Unlock()
		if ok {
			// The process is gone; free what os/exec holds for it (a pidfd).
			w.proc.Release()
			w.ch <- spawn.Exit{Status: ws, Rusage: ru, At: time.Now()}
		}
	}
}

// Spawn starts cmd and returns the channel its exit is sent on, once. The caller
// must not call cmd.Wait.
func (r *Reaper) Spawn(cmd *exec.Cmd) (<-chan spawn.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan spawn.Exit, 1)
	r.waiters[cmd.Process.Pid] = waiter{proc: cmd.Process, ch: ch}
	return ch, nil
}

type waiter struct {
	proc *os.Process
	ch   chan spawn.Exit
}

// Orphans is how many processes PID 1 reaped that it did not start itself.
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}
