package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"hardvisor.dev/hardvisor/services/kernfs"
)

// Paths the hardening steps read.
const (
	// CmdlinePath is where the builder puts the image's canonical command line.
	CmdlinePath  = "/etc/hardvisor/cmdline"
	lockdownPath = "/sys/kernel/security/lockdown"
)

// ApplySysctls writes each setting and reads it back. Any setting that does
// not read back as wanted stops the boot: security must not depend on a
// write that silently failed.
type ApplySysctls struct {
	Host  *Host
	Table []Sysctl
}

func (ApplySysctls) String() string { return "sysctls" }

// Run applies and verifies the table.
func (s ApplySysctls) Run() error {
	var checks []Check
	for _, sc := range s.Table {
		checks = append(checks, applySysctl(sc))
	}
	s.Host.Hardening = append(s.Host.Hardening, checks...)
	if bad := failed(checks); len(bad) > 0 {
		return fmt.Errorf("hardening sysctls not in force: %s", strings.Join(bad, "; "))
	}
	return nil
}

func applySysctl(sc Sysctl) Check {
	c := Check{Name: sc.Key, Want: sc.Value}
	b, werr, err := kernfs.WriteRead(sc.Path(), sc.Value)
	if errors.Is(err, fs.ErrNotExist) && sc.IfPresent {
		c.NotApplicable = true
		return c
	}
	if err != nil {
		c.Err = err.Error()
		return c
	}
	c.Got = strings.Join(strings.Fields(string(b)), " ")
	c.OK = c.Got == sc.Value
	// A refused write is no failure when the value is in force already
	// (kexec_load_disabled=1 refuses a second write with EPERM).
	if !c.OK && werr != nil {
		c.Err = werr.Error()
	}
	return c
}

// VerifyCmdline checks that the kernel booted with every argument of the
// image's canonical command line and that lockdown is in force.
type VerifyCmdline struct{ Host *Host }

func (VerifyCmdline) String() string { return "cmdline" }

// Run compares /proc/cmdline with the image's and reads the lockdown mode.
func (s VerifyCmdline) Run() error {
	want, err := os.ReadFile(CmdlinePath)
	if err != nil {
		return err
	}
	running, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	missing := MissingArgs(string(want), string(running))
	s.Host.Hardening = append(s.Host.Hardening, Check{Name: "cmdline", Want: "all image arguments",
		Got: strings.Join(missing, " "), OK: len(missing) == 0})
	if len(missing) > 0 {
		return fmt.Errorf("the kernel was booted without %s (a boot loader replaced the command line)", strings.Join(missing, " "))
	}
	b, err := os.ReadFile(lockdownPath)
	if err != nil {
		return fmt.Errorf("read lockdown mode: %w", err)
	}
	mode := LockdownMode(string(b))
	wantMode := s.Host.Config.Security.Lockdown
	c := Check{Name: "lockdown", Want: wantMode, Got: mode, OK: mode == wantMode}
	s.Host.Hardening = append(s.Host.Hardening, c)
	if !c.OK {
		return fmt.Errorf("kernel lockdown is %q, want %q", mode, wantMode)
	}
	return nil
}

// LockdownMode picks the active mode out of securityfs's "none [integrity] confidentiality".
func LockdownMode(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}

// checkSELinux reads the SELinux mode back from selinuxfs and checks it
// against the config's mode and profile.
func checkSELinux(mode, profile string) Check {
	b, err := os.ReadFile(selinuxfs + "/enforce")
	c := SELinuxCheck(mode, profile, SELinuxMode(string(b)))
	if err != nil {
		c.OK, c.Err = false, err.Error()
	}
	return c
}

// DisableModules sets kernel.modules_disabled=1 once the modules and data
// steps have loaded what the host needs, before any service starts: from
// then on no module can be loaded, by anyone.
type DisableModules struct{ Host *Host }

func (DisableModules) String() string { return "modules_disabled" }

// Run disables module loading and verifies it.
func (s DisableModules) Run() error {
	c := applySysctl(Sysctl{Key: "kernel.modules_disabled", Value: "1"})
	s.Host.Hardening = append(s.Host.Hardening, c)
	if !c.OK {
		return fmt.Errorf("disable module loading: %s", c)
	}
	return nil
}

// FreeModules removes the module files from the in-memory root file system
// once the host is ready: with loading disabled they are dead weight (15 MB
// in the default image), and freeing them costs 0.1-0.25 s under TCG, where
// the kernel zeroes every freed page (init_on_free), that the host need not
// wait for.
type FreeModules struct {
	Host *Host
	// Dir holds the module files ("/usr/lib/modules").
	Dir string
}

func (FreeModules) String() string { return "free modules" }

// Optional: the host is already up, and loading is disabled either way.
func (FreeModules) Optional() bool { return true }

// Run removes the files. It comes after DisableModules, which stops the
// boot if loading stays enabled.
func (s FreeModules) Run() error {
	freed, err := removeTree(s.Dir)
	if err != nil {
		return fmt.Errorf("free the module files: %w", err)
	}
	s.Host.Logf("modules: loading disabled; freed %d MB of module files in %s", freed>>20, s.Dir)
	return nil
}

// removeTree removes dir and everything under it, and reports the bytes of
// the regular files it held.
func removeTree(dir string) (int64, error) {
	var size int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return size, os.RemoveAll(dir)
}
