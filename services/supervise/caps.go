package supervise

import (
	"fmt"
	"slices"
	"strings"
)

// capNames are the Linux capabilities by number (capability.h).
var capNames = []string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
	"ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
	"lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
	"wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

// capSet turns capability names into numbers, sorted. nil stays nil (keep
// everything); an empty list gives an empty, non-nil set (drop everything).
func capSet(names []string) ([]uintptr, error) {
	if names == nil {
		return nil, nil
	}
	set := []uintptr{}
	for _, n := range names {
		i := slices.Index(capNames, strings.TrimPrefix(strings.ToLower(n), "cap_"))
		if i < 0 {
			return nil, fmt.Errorf("unknown capability %q", n)
		}
		if !slices.Contains(set, uintptr(i)) {
			set = append(set, uintptr(i))
		}
	}
	slices.Sort(set)
	return set, nil
}
