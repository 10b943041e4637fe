package supervise

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr is what Go itself applies in the child between fork and exec:
// a process group of its own (so a stop reaches every process the service
// started), the user, ambient capabilities for a non-root user, and the
// cgroup it is born in.
func sysProcAttr(spec *Spec, caps []uintptr, cgroupFD int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if u := spec.User; u != nil {
		a.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32{}, u.Groups...)}
		if caps != nil && u.UID != 0 {
			// Go keeps capabilities across setuid, raises these into the
			// inheritable set and then the ambient set, so exec gives the
			// program exactly these in its permitted and effective sets.
			a.AmbientCaps = caps
		}
	}
	if cgroupFD >= 0 {
		a.UseCgroupFD = true
		a.CgroupFD = cgroupFD
	}
	return a
}

// spawnIsolated starts cmd through sp, first entering spec's network
// namespace, setting no_new_privs, dropping the bounding set down to caps
// and setting the SELinux exec label where the spec asks for it.
//
// Go cannot apply these in the child itself, but all four are per-thread
// state a forked child inherits from the thread that forks it. So the start
// happens on a fresh goroutine locked to its OS thread, which is changed
// first and never unlocked: when the goroutine returns the runtime
// terminates the thread instead of reusing it, so no other goroutine ever
// runs in the changed namespace or with the reduced capabilities (and the
// runtime starts new threads from a clean template thread while one is
// locked). This needs no helper binary and no re-exec of PID 1; it needs
// Spawn to call cmd.Start on the calling goroutine.
func spawnIsolated(sp Spawner, cmd *exec.Cmd, spec *Spec, caps []uintptr) (<-chan Exit, error) {
	if spec.NetNS == "" && caps == nil && !spec.NoNewPrivileges && spec.SELinuxLabel == "" {
		return sp.Spawn(cmd)
	}
	type result struct {
		exited <-chan Exit
		err    error
	}
	var r result
	onSpareThread(func() {
		if err := isolateThread(spec, caps); err != nil {
			r.err = err
			return
		}
		r.exited, r.err = sp.Spawn(cmd)
	})
	return r.exited, r.err
}

// onSpareThread runs f on an OS thread that is thrown away afterwards, and
// waits for it. The main thread is never used: the runtime cannot end it, and
// it is the thread /proc/self (and so /proc/net) shows, so a changed main
// thread would make PID 1 read another namespace's files. A goroutine that
// lands on it keeps it occupied, unchanged, while it tries again elsewhere.
func onSpareThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			onSpareThread(f)
			runtime.UnlockOSThread()
			return
		}
		f()
		// No UnlockOSThread: see spawnIsolated.
	}()
	<-done
}

// isolateThread changes the calling (locked) thread.
func isolateThread(spec *Spec, caps []uintptr) error {
	if spec.NetNS != "" {
		fd, err := unix.Open(spec.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open network namespace: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("enter network namespace %s: %w", spec.NetNS, err)
		}
	}
	if spec.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if caps != nil {
		for c := 0; c <= lastCap(); c++ {
			if slices.Contains(caps, uintptr(c)) {
				continue
			}
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if spec.SELinuxLabel != "" {
		// The thread's exec label: the child the thread forks inherits it
		// and its execve consumes it. /proc/self would name the main thread,
		// whose label only the main thread may set.
		if err := os.WriteFile(execAttr, []byte(spec.SELinuxLabel), 0); err != nil {
			return fmt.Errorf("set SELinux exec label %s: %w", spec.SELinuxLabel, err)
		}
	}
	return nil
}

// execAttr is the calling thread's SELinux exec label.
const execAttr = "/proc/thread-self/attr/exec"

// lastCap is the highest capability the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return len(capNames) - 1
}

// killGroup signals a whole process group.
func killGroup(pgid int, sig syscall.Signal) error { return syscall.Kill(-pgid, sig) }
