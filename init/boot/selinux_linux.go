package boot

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/selinux"
)

// What the SELinux steps read and write.
var (
	selinuxfs       = "/sys/fs/selinux"
	procCmdline     = "/proc/cmdline"
	selinuxPolicy   = selinux.PolicyPath
	selinuxContexts = selinux.FileContextsPath
)

// selinuxArg makes the Debian kernel's major LSM SELinux.
const selinuxArg = "security=selinux"

// SELinux loads the image's policy, labels the files the initramfs brought
// unlabeled (the root file system, /dev, /run) and puts the policy in the
// config's mode: enforcing, or permissive where the profile allows it. The
// mode read back is a hardening check; production boots only enforcing.
type SELinux struct{ Host *Host }

func (SELinux) String() string { return "selinux" }

// Run needs a kernel with SELinux and security=selinux on its command line.
func (s SELinux) Run() error {
	cmdline, err := os.ReadFile(procCmdline)
	if err != nil {
		return err
	}
	if len(MissingArgs(selinuxArg, string(cmdline))) > 0 {
		return fmt.Errorf("the kernel was booted without %s", selinuxArg)
	}
	if _, err := os.Stat(selinuxfs); err != nil {
		return fmt.Errorf("the kernel has no SELinux (%s: %w)", selinuxfs, err)
	}
	if err := unix.Mount("selinuxfs", selinuxfs, "selinuxfs", nosuid|noexec, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount selinuxfs on %s: %w", selinuxfs, err)
	}
	if err := loadPolicy(selinuxPolicy, selinuxfs+"/load"); err != nil {
		return err
	}
	fc, err := readFileContexts(selinuxContexts)
	if err != nil {
		return err
	}
	if _, err := relabel(fc, fc.Roots(), xattrLabeler{}); err != nil {
		return fmt.Errorf("relabel: %w", err)
	}
	want := selinuxWant(s.Host.Config.Security.SELinux, s.Host.Config.Profile)
	enforce := "0"
	if want == config.SELinuxEnforcing {
		enforce = "1"
	}
	if err := os.WriteFile(selinuxfs+"/enforce", []byte(enforce), 0); err != nil {
		return fmt.Errorf("set SELinux %s: %w", want, err)
	}
	c := checkSELinux(s.Host.Config.Security.SELinux, s.Host.Config.Profile)
	s.Host.Hardening = append(s.Host.Hardening, c)
	if !c.OK {
		return fmt.Errorf("SELinux not in force: %s", c)
	}
	return nil
}

// loadPolicy writes the binary policy to selinuxfs's load file in a single
// write, as the kernel wants it.
func loadPolicy(policy, load string) error {
	b, err := os.ReadFile(policy)
	if err != nil {
		return fmt.Errorf("read SELinux policy: %w", err)
	}
	f, err := os.OpenFile(load, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("load SELinux policy: %w", err)
	}
	defer f.Close()
	n, err := unix.Write(int(f.Fd()), b)
	if err == nil && n != len(b) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	if err != nil {
		return fmt.Errorf("load SELinux policy %s: %w", policy, err)
	}
	return nil
}

// SELinuxData relabels the data partition once it is mounted: its files
// keep their labels, but one written by an older image (or before the
// partition had any) is put right, and a stale guest label is cleared.
type SELinuxData struct{ Host *Host }

func (SELinuxData) String() string { return "selinux data" }

// Run relabels below Host.DataMounted; without a data partition it does nothing.
func (s SELinuxData) Run() error {
	if s.Host.DataMounted == "" {
		return nil
	}
	fc, err := readFileContexts(selinuxContexts)
	if err != nil {
		return err
	}
	if _, err := relabel(fc, rootsBelow(fc.Roots(), s.Host.DataMounted), xattrLabeler{}); err != nil {
		return fmt.Errorf("relabel %s: %w", s.Host.DataMounted, err)
	}
	return nil
}

// xattrLabeler reads and writes security.selinux, never following symlinks.
type xattrLabeler struct{}

const selinuxXattr = "security.selinux"

func (xattrLabeler) Label(p string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, selinuxXattr, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, 2*len(buf))
			continue
		case errors.Is(err, unix.ENODATA):
			return "", errNoLabel
		case err != nil:
			return "", err
		}
		return string(bytes.TrimRight(buf[:n], "\x00")), nil
	}
}

func (xattrLabeler) SetLabel(p, context string) error {
	return unix.Lsetxattr(p, selinuxXattr, []byte(context), 0)
}
