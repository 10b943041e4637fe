// Package spawn is the seam through which hardvisor starts processes it must
// not wait for itself: in PID 1 the reaper reaps every child, so whoever starts
// a process gets its exit on a channel instead. It is a leaf package so PID 1's
// reaper needs nothing else of the service manager.
package spawn

import (
	"os/exec"
	"syscall"
	"time"
)

// Exit is how a service process ended.
type Exit struct {
	// Status is the wait status.
	Status syscall.WaitStatus
	// Rusage is the resource usage of the process and its waited-for children.
	Rusage syscall.Rusage
	// At is when the exit was seen.
	At time.Time
}

// Spawner starts a command and reports its exit exactly once on the
// channel; PID 1's reaper implements it (it starts the command under its
// lock so the exit cannot be reaped before the pid is registered).
//
// Spawn must start cmd on the calling goroutine (cmd.Start, not handed to
// another goroutine): the supervisor prepares per-thread state the child
// inherits, the network namespace and the capability bounding set, on a
// locked OS thread before calling Spawn. The supervisor never waits for a
// process itself.
type Spawner interface {
	Spawn(cmd *exec.Cmd) (exited <-chan Exit, err error)
}

// WaitSpawner is a Spawner for use outside PID 1 and in tests: it starts
// the command and waits for it in a goroutine of its own.
type WaitSpawner struct{}

var _ Spawner = WaitSpawner{}

// Spawn starts cmd and reports its exit once.
func (WaitSpawner) Spawn(cmd *exec.Cmd) (<-chan Exit, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan Exit, 1)
	go func() {
		err := cmd.Wait()
		ex := Exit{At: time.Now()}
		if cmd.ProcessState != nil {
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				ex.Status = ws
			}
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
				ex.Rusage = *ru
			}
		} else if err != nil {
			// Wait failed without a state (it cannot for a started
			// command, but a zero status would read as success).
			ex.Status = syscall.WaitStatus(255 << 8)
		}
		ch <- ex
	}()
	return ch, nil
}
