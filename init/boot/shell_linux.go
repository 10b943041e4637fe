package boot

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	"hardvisor.dev/hardvisor/services/spawn"
)

// DebugShell keeps an interactive shell on the serial console (debug profile
// only: production images contain no shell at all).
type DebugShell struct {
	Host *Host
	// Shell is the shell's argv, Console the tty it runs on ("/dev/ttyS0").
	Shell   []string
	Console string
	// Spawner starts the shell; PID 1's reaper, which owns every child's exit.
	Spawner spawn.Spawner
}

// Serve runs the shell and starts a new one whenever it exits. It returns only
// if the console or the shell cannot be opened.
func (d DebugShell) Serve() error {
	for {
		tty, err := os.OpenFile(d.Console, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		cmd := exec.Command(d.Shell[0], d.Shell[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/bbin", "HOME=/", "TERM=linux"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		d.Host.Logf("debug shell on %s", d.Console)
		exited, err := d.Spawner.Spawn(cmd)
		if err != nil {
			tty.Close()
			return err
		}
		<-exited
		tty.Close()
		time.Sleep(time.Second) // do not spin if the shell dies at once
	}
}
