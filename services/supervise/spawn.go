package supervise

import (
	"fmt"
	"syscall"
	"time"

	"hardvisor.dev/hardvisor/services/spawn"
)

// Exit is how a service process ended (see package spawn).
type Exit = spawn.Exit

// Spawner starts service processes (see package spawn).
type Spawner = spawn.Spawner

// WaitSpawner is the Spawner for use outside PID 1 (see package spawn).
type WaitSpawner = spawn.WaitSpawner

// ExitInfo is how a service's last run ended, for the status report.
type ExitInfo struct {
	// Code is the exit status, or -1 when the process was killed by a signal
	// or never started.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
	// At is when it ended.
	At time.Time
	// Reason says why it ended when the supervisor knows better than the
	// status: a start error, a failed health check.
	Reason string
}

// Success reports whether the run ended with status 0 on its own.
func (e ExitInfo) Success() bool { return e.Code == 0 && e.Signal == 0 && e.Reason == "" }

// String is "exit status 3", "killed by signal 9 (killed)" or the reason.
func (e ExitInfo) String() string {
	var s string
	switch {
	case e.Signal != 0:
		s = fmt.Sprintf("killed by signal %d (%v)", int(e.Signal), e.Signal)
	case e.Code >= 0:
		s = fmt.Sprintf("exit status %d", e.Code)
	}
	switch {
	case e.Reason != "" && s != "":
		return e.Reason + ": " + s
	case e.Reason != "":
		return e.Reason
	}
	return s
}

func exitInfo(ex Exit) ExitInfo {
	ws := ex.Status
	switch {
	case ws.Signaled():
		return ExitInfo{Code: -1, Signal: ws.Signal(), At: ex.At}
	case ws.Exited():
		return ExitInfo{Code: ws.ExitStatus(), At: ex.At}
	}
	return ExitInfo{Code: -1, At: ex.At, Reason: fmt.Sprintf("wait status %#x", uint32(ws))}
}
