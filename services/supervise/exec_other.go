//go:build !linux

package supervise

import (
	"errors"
	"os/exec"
	"syscall"
)

func sysProcAttr(spec *Spec, _ []uintptr, _ int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if u := spec.User; u != nil {
		a.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32{}, u.Groups...)}
	}
	return a
}

func spawnIsolated(sp Spawner, cmd *exec.Cmd, spec *Spec, caps []uintptr) (<-chan Exit, error) {
	if spec.NetNS != "" || caps != nil || spec.NoNewPrivileges || spec.SELinuxLabel != "" {
		return nil, errors.New("network namespaces, capabilities and SELinux labels need Linux")
	}
	return sp.Spawn(cmd)
}

func killGroup(pgid int, sig syscall.Signal) error { return syscall.Kill(-pgid, sig) }
