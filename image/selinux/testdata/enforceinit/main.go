// Command enforceinit is the PID 1 of TestEnforcingOnRealKernel: it runs
// init/boot's SELinux step (policy load, relabel, enforcing), labels two
// guest images with different categories and reports what processes in
// the guest and management labels may do with them. Run with arguments it
// is the probe those processes run.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/selinux"
	"hardvisor.dev/hardvisor/init/boot"
	"hardvisor.dev/hardvisor/services/supervise"
)

const (
	imageA = "/mnt/a.img"
	imageB = "/mnt/b.img"
	key    = "/etc/hardvisor/pki/server-key.pem"
	runcon = "/bin/runcon"
)

func say(format string, args ...any) { fmt.Printf("enforceinit: "+format+"\n", args...) }

func main() {
	if len(os.Args) > 1 {
		probe(os.Args[1:])
		return
	}
	if err := pid1(); err != nil {
		say("FAIL %v", err)
	}
	say("done")
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func pid1() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	h := &boot.Host{Console: os.Stdout, Config: &config.Config{Profile: config.ProfileProduction}}
	h.Config.Security.SELinux = config.SELinuxEnforcing
	start := time.Now()
	if err := (boot.SELinux{Host: h}).Run(); err != nil {
		return fmt.Errorf("step selinux: %w", err)
	}
	say("step selinux: ok in %dms", time.Since(start).Milliseconds())
	for _, c := range h.Hardening {
		say("hardening %s ok=%v", c, c.OK)
	}
	say("pid1 %s", attr("current"))
	for _, p := range []string{"/init", key, "/dev/null", "/dev/urandom"} {
		say("label %s %s", p, label(p))
	}

	// Two guests' images, on a tmpfs (security xattrs, like ext4).
	if err := os.MkdirAll("/mnt", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/mnt", "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	for p, cats := range map[string]string{imageA: "c1,c2", imageB: "c3,c4"} {
		if err := os.WriteFile(p, []byte("disk\n"), 0o644); err != nil {
			return err
		}
		if err := unix.Setxattr(p, "security.selinux", []byte(selinux.ImageLabel+":"+cats), 0); err != nil {
			return fmt.Errorf("label %s: %w", p, err)
		}
		say("label %s %s", p, label(p))
	}

	// A guest at s0:c3,c4 that the others try to signal.
	other := exec.Command(runcon, selinux.GuestTCGLabel+":c3,c4", "/init", "sleep")
	if err := other.Start(); err != nil {
		return fmt.Errorf("start the other guest: %w", err)
	}
	defer other.Process.Kill()
	time.Sleep(200 * time.Millisecond)
	pid := strconv.Itoa(other.Process.Pid)
	say("other guest pid %s %s", pid, procAttr(pid))

	probeArgs := []string{"probe", imageA, imageB, key, "signal:" + pid, "execmem"}
	for _, ctx := range []string{
		selinux.GuestTCGLabel + ":c1,c2",
		selinux.GuestLabel + ":c1,c2",
		selinux.GuestTCGLabel + ":c3,c4",
		selinux.MgmtLabel,
	} {
		out, err := exec.Command(runcon, append([]string{ctx, "/init"}, probeArgs...)...).CombinedOutput()
		report(ctx, "runcon", string(out), err)
	}

	// The supervisor's way: mgmtd's label, user and no_new_privs.
	sup := supervise.New(supervise.Options{Services: []supervise.Spec{{
		Name: "mgmt", Command: append([]string{"/init"}, probeArgs...), SELinuxLabel: selinux.MgmtLabel,
		User: &supervise.User{UID: 900, GID: 900}, NoNewPrivileges: true, Restart: supervise.Never,
	}}})
	if err := sup.Start(context.Background()); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st := sup.Status()[0]; st.State == supervise.StateExited || st.State == supervise.StateFailed {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	lines, _ := sup.Logs("mgmt", 0)
	report(selinux.MgmtLabel, "supervise", strings.Join(lines, "\n"), nil)
	st := sup.Status()[0]
	say("supervise state %s exit %v", st.State, st.LastExit)
	return nil
}

func report(ctx, how, out string, err error) {
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			say("%s %s | %s", how, ctx, l)
		}
	}
	if err != nil {
		say("%s %s | exit %v", how, ctx, err)
	}
}

func attr(name string) string {
	b, err := os.ReadFile("/proc/self/attr/" + name)
	if err != nil {
		return err.Error()
	}
	return strings.TrimRight(string(b), "\x00\n")
}

func procAttr(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/attr/current")
	if err != nil {
		return err.Error()
	}
	return strings.TrimRight(string(b), "\x00\n")
}

func label(p string) string {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, "security.selinux", buf)
	if err != nil {
		return err.Error()
	}
	return strings.TrimRight(string(buf[:n]), "\x00")
}

// probe prints, one a line, the context it runs in and what the kernel let
// it do: open each file, signal a process, map memory writable and executable.
func probe(args []string) {
	if args[0] == "sleep" {
		time.Sleep(time.Hour)
		return
	}
	fmt.Printf("context %s\n", attr("current"))
	for _, a := range args[1:] {
		switch {
		case a == "execmem":
			b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANON)
			if err == nil {
				unix.Munmap(b)
			}
			fmt.Printf("execmem: %s\n", result(err))
		case strings.HasPrefix(a, "signal:"):
			pid, _ := strconv.Atoi(strings.TrimPrefix(a, "signal:"))
			fmt.Printf("signal other guest: %s\n", result(syscall.Kill(pid, 0)))
		default:
			f, err := os.Open(a)
			if err == nil {
				f.Close()
			}
			fmt.Printf("open %s: %s\n", a, result(err))
		}
	}
}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, unix.EACCES):
		return "EACCES"
	case errors.Is(err, unix.EPERM):
		return "EPERM"
	}
	return err.Error()
}
