package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/config"
)

// writableCgroup2 finds a cgroup2 mount this test may create groups in, and
// the controllers it offers, or skips the test saying why not.
func writableCgroup2(t *testing.T) (mount string, controllers []string) {
	t.Helper()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Skipf("no /proc/self/mounts: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "cgroup2" {
			continue
		}
		probe := filepath.Join(fields[1], fmt.Sprintf("hvprobe-%d", os.Getpid()))
		if err := os.Mkdir(probe, 0o755); err != nil {
			t.Logf("cgroup2 at %s not writable: %v", fields[1], err)
			continue
		}
		os.Remove(probe)
		b, _ := os.ReadFile(filepath.Join(fields[1], "cgroup.controllers"))
		return fields[1], strings.Fields(string(b))
	}
	t.Skip("no writable cgroup2 mount on this machine")
	return "", nil
}

// TestGroupStartsChildInside checks the fd path: a child started with
// UseCgroupFD is in the group from birth, its usage reads, and Kill empties
// the group. It needs no controllers, so it runs on a hybrid v1/v2 machine.
func TestGroupStartsChildInside(t *testing.T) {
	mount, _ := writableCgroup2(t)
	rel := fmt.Sprintf("hvtest-%d", os.Getpid())
	g, err := newGroup(mount, rel, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); os.Remove(g.Path()) })

	cmd := exec.Command("sleep", "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	procs, err := os.ReadFile(filepath.Join(g.Path(), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(procs)); !slices.Equal(got, []string{strconv.Itoa(cmd.Process.Pid)}) {
		t.Errorf("cgroup.procs = %q, want the child %d", got, cmd.Process.Pid)
	}
	if _, err := g.Usage(); err != nil {
		t.Errorf("Usage: %v", err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("child ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cgroup.kill did not kill the child")
	}
}

// TestTree creates the real layout; it needs the memory, cpu and pids
// controllers at the mount's root, as PID 1 has them.
func TestTree(t *testing.T) {
	mount, ctrl := writableCgroup2(t)
	for _, c := range []string{"memory", "cpu", "pids"} {
		if !slices.Contains(ctrl, c) {
			t.Skipf("cgroup2 at %s offers controllers %q, not %s: cannot apply limits here", mount, ctrl, c)
		}
	}
	if _, err := os.Stat(filepath.Join(mount, Slice)); err == nil {
		t.Skipf("%s already exists at %s: not touching a live tree", Slice, mount)
	}
	tree, err := Open(mount, config.Resources{Reserve: config.Capacity{Memory: config.Gi, CPUs: 1}}, Size{Memory: 4 * config.Gi, CPUs: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(filepath.Join(mount, Slice, "test"))
		os.Remove(filepath.Join(mount, Slice))
		os.Remove(filepath.Join(mount, Machine))
	})
	g, err := tree.Place("test", Limits{MemoryMax: 64 * config.Mi, PIDsMax: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for file, want := range map[string]string{
		Slice + "/test/memory.max": "67108864",
		Slice + "/test/pids.max":   "16",
		Slice + "/test/cpu.weight": "100",
		Slice + "/memory.min":      "1073741824",
		Machine + "/memory.max":    "3221225472",
		Machine + "/cpu.max":       "300000 100000",
	} {
		b, err := os.ReadFile(filepath.Join(mount, file))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}
