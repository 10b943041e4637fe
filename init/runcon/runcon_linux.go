package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// runcon sets context as the exec label of this thread and executes argv
// on it: the label is per thread, so the thread must stay the same between
// the two (/proc/thread-self names it whichever thread it is).
func runcon(context string, ids *user, argv []string) error {
	runtime.LockOSThread()
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if err := os.WriteFile("/proc/thread-self/attr/exec", []byte(context), 0); err != nil {
		return fmt.Errorf("set exec context %s: %w", context, err)
	}
	if ids != nil {
		if err := syscall.Setgroups(nil); err != nil {
			return err
		}
		if err := syscall.Setgid(ids.gid); err != nil {
			return err
		}
		if err := syscall.Setuid(ids.uid); err != nil {
			return err
		}
	}
	if err := syscall.Exec(prog, argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s in %s: %w", prog, context, err)
	}
	return nil
}
