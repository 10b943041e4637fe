// Package qemutests boots the artifacts that `hardvisor build` produced (not a
// test-only image) under QEMU and asserts on what the host prints and answers.
// `make test` builds out/ and out-debug/ and points HARDVISOR_OUT and
// HARDVISOR_OUT_DEBUG at them.
package qemutests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/manifest"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// Deadlines, generous for TCG on a loaded 2-core machine; a wait ends as soon
// as its line appears.
const (
	bootTimeout     = 90 * time.Second
	shutdownTimeout = 30 * time.Second
)

// outDir returns the artifact directory named by env, failing the test with
// what to run when it is missing.
func outDir(t *testing.T, env string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		t.Fatalf("%s is not set: run the QEMU tests with `make test` (it builds the artifacts and sets it)", env)
	}
	if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err != nil {
		t.Fatalf("%s=%s holds no build: %v", env, dir, err)
	}
	return dir
}

func readManifest(t *testing.T, dir string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cmdline is the canonical command line the build wrote beside the UKI.
func cmdline(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, build.Cmdline))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// directBoot starts the build in dir by direct kernel boot with its canonical
// command line.
func directBoot(t *testing.T, dir string, extra func(*qemu.Options)) *qemu.VM {
	t.Helper()
	opts := qemu.Options{
		Kernel:   filepath.Join(dir, build.Kernel),
		Initrd:   filepath.Join(dir, build.Initramfs),
		Append:   cmdline(t, dir),
		NoReboot: true,
	}
	if extra != nil {
		extra(&opts)
	}
	return qemu.StartT(t, opts)
}

func readyLine(version string) *regexp.Regexp {
	return regexp.MustCompile(`hardvisor: ready version=` + regexp.QuoteMeta(version) + `\b.*`)
}

func expect(t *testing.T, vm *qemu.VM, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	m, err := vm.Expect(re, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// powerDown presses the ACPI power button and checks that PID 1 shuts the
// host down cleanly and QEMU exits.
func powerDown(t *testing.T, vm *qemu.VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := vm.QMP(ctx, "system_powerdown", nil); err != nil {
		t.Fatalf("system_powerdown: %v", err)
	}
	expect(t, vm, regexp.MustCompile(`hardvisor: poweroff: syncing disks`), shutdownTimeout)
	if _, err := vm.Wait(shutdownTimeout); err != nil {
		t.Fatalf("QEMU did not exit after poweroff: %v\n%s", err, vm.Tail(20))
	}
}

// rebootDown presses Ctrl-Alt-Del and checks that PID 1 takes the host
// down for a reboot cleanly; with NoReboot, QEMU then exits.
func rebootDown(t *testing.T, vm *qemu.VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys := []map[string]string{{"type": "qcode", "data": "ctrl"}, {"type": "qcode", "data": "alt"}, {"type": "qcode", "data": "delete"}}
	if _, err := vm.QMP(ctx, "send-key", map[string]any{"keys": keys}); err != nil {
		t.Fatalf("send-key ctrl-alt-delete: %v", err)
	}
	expect(t, vm, regexp.MustCompile(`hardvisor: reboot: syncing disks`), shutdownTimeout)
	if _, err := vm.Wait(shutdownTimeout); err != nil {
		t.Fatalf("QEMU did not exit after the reboot: %v\n%s", err, vm.Tail(20))
	}
}

// needTool fails (not skips) when a test prerequisite is missing: `make test`
// installs them.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: apt-get install %s (make test does)", name, pkg)
	}
	return p
}
