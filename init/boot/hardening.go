package boot

import (
	"strings"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/status"
)

// Sysctl is one kernel setting PID 1 applies and then reads back.
type Sysctl struct {
	Key, Value string
	// IfPresent marks a setting that older kernels lack (io_uring_disabled
	// arrived in 6.6): absent, it is reported, not failed.
	IfPresent bool
}

// Path is the setting's file under /proc/sys.
func (s Sysctl) Path() string { return "/proc/sys/" + strings.ReplaceAll(s.Key, ".", "/") }

// HardeningSysctls is the KSPP-recommended sysctl set every host runs with.
var HardeningSysctls = []Sysctl{
	{Key: "kernel.kptr_restrict", Value: "2"},
	{Key: "kernel.dmesg_restrict", Value: "1"},
	{Key: "kernel.perf_event_paranoid", Value: "3"},
	{Key: "kernel.unprivileged_bpf_disabled", Value: "1"},
	{Key: "net.core.bpf_jit_harden", Value: "2"},
	{Key: "kernel.yama.ptrace_scope", Value: "2"},
	{Key: "kernel.kexec_load_disabled", Value: "1"},
	{Key: "kernel.sysrq", Value: "0"},
	{Key: "kernel.randomize_va_space", Value: "2"},
	{Key: "kernel.io_uring_disabled", Value: "2", IfPresent: true},
	{Key: "kernel.unprivileged_userns_clone", Value: "0", IfPresent: true},
	{Key: "vm.unprivileged_userfaultfd", Value: "0"},
	{Key: "vm.mmap_min_addr", Value: "65536"},
	{Key: "dev.tty.ldisc_autoload", Value: "0"},
	{Key: "fs.protected_symlinks", Value: "1"},
	{Key: "fs.protected_hardlinks", Value: "1"},
	{Key: "fs.protected_fifos", Value: "2"},
	{Key: "fs.protected_regular", Value: "2"},
	{Key: "fs.suid_dumpable", Value: "0"},
	{Key: "net.ipv4.tcp_syncookies", Value: "1"},
	{Key: "net.ipv4.icmp_echo_ignore_broadcasts", Value: "1"},
	{Key: "net.ipv4.conf.all.accept_redirects", Value: "0"},
	{Key: "net.ipv4.conf.default.accept_redirects", Value: "0"},
	{Key: "net.ipv4.conf.all.secure_redirects", Value: "0"},
	{Key: "net.ipv4.conf.default.secure_redirects", Value: "0"},
	{Key: "net.ipv4.conf.all.send_redirects", Value: "0"},
	{Key: "net.ipv4.conf.default.send_redirects", Value: "0"},
	{Key: "net.ipv4.conf.all.accept_source_route", Value: "0"},
	{Key: "net.ipv4.conf.default.accept_source_route", Value: "0"},
	{Key: "net.ipv4.conf.all.rp_filter", Value: "1"},
	{Key: "net.ipv4.conf.default.rp_filter", Value: "1"},
	{Key: "net.ipv4.conf.all.log_martians", Value: "1"},
	{Key: "net.ipv6.conf.all.accept_redirects", Value: "0"},
	{Key: "net.ipv6.conf.default.accept_redirects", Value: "0"},
	{Key: "net.ipv6.conf.all.accept_source_route", Value: "0"},
	{Key: "net.ipv6.conf.default.accept_source_route", Value: "0"},
}

// Check is the outcome of one hardening setting, applied and verified; the
// status report carries it as it is.
type Check = status.Check

// MissingArgs returns the arguments of want (the image's canonical command
// line) that the running kernel's command line lacks: a boot loader that
// replaced the command line has dropped hardening.
func MissingArgs(want, running string) []string {
	have := map[string]bool{}
	for _, a := range strings.Fields(running) {
		have[a] = true
	}
	var missing []string
	for _, a := range strings.Fields(want) {
		if !have[a] {
			missing = append(missing, a)
		}
	}
	return missing
}

// SELinuxMode names the mode selinuxfs's enforce file reads as: "1"
// enforcing, "0" permissive; anything else is returned as read.
func SELinuxMode(enforce string) string {
	switch m := strings.TrimSpace(enforce); m {
	case "1":
		return config.SELinuxEnforcing
	case "0":
		return config.SELinuxPermissive
	default:
		return m
	}
}

// selinuxWant is the SELinux mode a host runs in: the config's (enforcing
// by default), but always enforcing in the production profile.
func selinuxWant(mode, profile string) string {
	if mode == "" || profile == config.ProfileProduction {
		return config.SELinuxEnforcing
	}
	return mode
}

// SELinuxCheck is the hardening check of the SELinux mode read back (got)
// against the config's mode and profile.
func SELinuxCheck(mode, profile, got string) Check {
	want := selinuxWant(mode, profile)
	return Check{Name: "selinux", Want: want, Got: got, OK: got == want}
}

// failed returns the checks that did not pass.
func failed(cs []Check) []string {
	var out []string
	for _, c := range cs {
		if !c.OK && !c.NotApplicable {
			out = append(out, c.String())
		}
	}
	return out
}

// applicable counts the checks this kernel has.
func applicable(cs []Check) int {
	n := 0
	for _, c := range cs {
		if !c.NotApplicable {
			n++
		}
	}
	return n
}

// passed counts the checks that read back as wanted.
func passed(cs []Check) int {
	n := 0
	for _, c := range cs {
		if c.OK {
			n++
		}
	}
	return n
}
