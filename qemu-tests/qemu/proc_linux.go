package qemu

import (
	"os"
	"syscall"
)

// sysProcAttr puts QEMU in a process group of its own, so killGroup also
// reaches anything it spawned, and has the kernel kill it if the test
// binary dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to p's process group.
func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		p.Kill() // the group is gone or was never made; try the process itself
	}
}
