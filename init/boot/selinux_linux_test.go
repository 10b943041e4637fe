package boot

import (
	"path/filepath"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/config"
)

// TestSELinuxRefusesKernel checks the step's clear failures on a kernel
// that cannot enforce the policy.
func TestSELinuxRefusesKernel(t *testing.T) {
	dir := t.TempDir()
	oldCmdline, oldFS := procCmdline, selinuxfs
	t.Cleanup(func() { procCmdline, selinuxfs = oldCmdline, oldFS })
	h := &Host{Config: &config.Config{Profile: config.ProfileProduction}}

	procCmdline = filepath.Join(dir, "cmdline")
	writeFile(t, procCmdline, "console=ttyS0 selinux=1\n")
	if err := (SELinux{Host: h}).Run(); err == nil || err.Error() != "the kernel was booted without security=selinux" {
		t.Errorf("without security=selinux: %v", err)
	}

	writeFile(t, procCmdline, "console=ttyS0 security=selinux\n")
	selinuxfs = filepath.Join(dir, "no-selinuxfs")
	err := (SELinux{Host: h}).Run()
	if err == nil || !strings.HasPrefix(err.Error(), "the kernel has no SELinux ("+selinuxfs) {
		t.Errorf("without selinuxfs: %v", err)
	}
	if len(h.Hardening) != 0 {
		t.Errorf("hardening %v, want none", h.Hardening)
	}
}
