package selinux

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/image/initramfs"
	"hardvisor.dev/hardvisor/image/kernel"
	"hardvisor.dev/hardvisor/image/rootfs"
)

// goBuild builds a static linux/amd64 program of this module.
func goBuild(t *testing.T, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// TestEnforcingOnRealKernel boots the Debian kernel with the compiled policy
// and testdata/enforceinit as PID 1, which runs init/boot's SELinux step and
// probes, from guest and management labels, two images of different
// categories. Slow (TCG): set HARDVISOR_SELINUX_QEMU=1.
func TestEnforcingOnRealKernel(t *testing.T) {
	if os.Getenv("HARDVISOR_SELINUX_QEMU") != "1" {
		t.Skip("set HARDVISOR_SELINUX_QEMU=1 to boot the kernel under QEMU")
	}
	needTool(t, "qemu-system-x86_64")
	needTool(t, "secilc")
	k, err := kernel.Find(kernel.FindOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := Build(filepath.Join(dir, "policy"), Enforcing)
	if err != nil {
		t.Fatal(err)
	}
	goBuild(t, filepath.Join(dir, "init"), "./testdata/enforceinit")
	goBuild(t, filepath.Join(dir, "runcon"), "hardvisor.dev/hardvisor/init/runcon")

	tr := rootfs.New()
	for _, add := range []func() error{
		func() error { return p.AddTo(tr) },
		func() error { return tr.AddFile("init", filepath.Join(dir, "init"), 0o755) },
		func() error { return tr.AddFile("bin/runcon", filepath.Join(dir, "runcon"), 0o755) },
		func() error {
			return tr.Add(rootfs.Entry{Path: "etc/hardvisor/pki/server-key.pem", Kind: rootfs.File, Mode: 0o440, GID: 900, Data: []byte("key\n")})
		},
		func() error { return tr.AddCharDev("dev/console", 0o600, 5, 1) },
	} {
		if err := add(); err != nil {
			t.Fatal(err)
		}
	}
	cpio := filepath.Join(dir, "initramfs.cpio")
	var buf bytes.Buffer
	if err := initramfs.WriteCPIO(&buf, tr, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpio, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", k.Image, "-initrd", cpio, "-append", "console=ttyS0 security=selinux panic=-1").CombinedOutput()
	console := strings.ReplaceAll(string(out), "\r", "")
	t.Logf("booted %s in %.1fs", k.Release, time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, console)
	}
	var lines []string
	for _, l := range strings.Split(console, "\n") {
		if i := strings.Index(l, "enforceinit: "); i >= 0 {
			lines = append(lines, l[i+len("enforceinit: "):])
		}
	}
	t.Logf("enforceinit:\n%s", strings.Join(lines, "\n"))
	var denials []string
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "avc:  denied") || strings.Contains(l, "SELinux:") {
			denials = append(denials, l)
		}
	}
	t.Logf("kernel's SELinux lines:\n%s", strings.Join(denials, "\n"))

	for _, bad := range []string{"not defined in policy", "unknown classes and permissions", "enforceinit: FAIL", "Kernel panic"} {
		if strings.Contains(console, bad) {
			t.Errorf("console shows %q:\n%s", bad, console)
		}
	}
	const (
		tcg12 = "system_u:system_r:svirt_tcg_t:s0:c1,c2"
		kvm12 = "system_u:system_r:svirt_t:s0:c1,c2"
		tcg34 = "system_u:system_r:svirt_tcg_t:s0:c3,c4"
		mgmt  = "system_u:system_r:hv_mgmt_t:s0"
		key   = "/etc/hardvisor/pki/server-key.pem"
	)
	want := []string{
		"hardening selinux = enforcing ok=true",
		"pid1 system_u:system_r:hv_host_t:s0-s0:c0.c1023",
		"label /init system_u:object_r:hv_file_t:s0",
		"label " + key + " system_u:object_r:hv_secret_t:s0",
		"label /dev/null system_u:object_r:hv_null_device_t:s0",
		"label /dev/urandom system_u:object_r:hv_random_device_t:s0",
		"label /mnt/a.img system_u:object_r:svirt_image_t:s0:c1,c2",
		"label /mnt/b.img system_u:object_r:svirt_image_t:s0:c3,c4",

		"runcon " + tcg12 + " | context " + tcg12,
		"runcon " + tcg12 + " | open /mnt/a.img: ok",
		"runcon " + tcg12 + " | open /mnt/b.img: EACCES",
		"runcon " + tcg12 + " | open " + key + ": EACCES",
		"runcon " + tcg12 + " | signal other guest: EACCES",
		"runcon " + tcg12 + " | execmem: ok",

		"runcon " + kvm12 + " | context " + kvm12,
		"runcon " + kvm12 + " | open /mnt/a.img: ok",
		"runcon " + kvm12 + " | open /mnt/b.img: EACCES",
		"runcon " + kvm12 + " | execmem: EACCES",

		"runcon " + tcg34 + " | open /mnt/a.img: EACCES",
		"runcon " + tcg34 + " | open /mnt/b.img: ok",
		"runcon " + tcg34 + " | signal other guest: ok",

		"runcon " + mgmt + " | context " + mgmt,
		"runcon " + mgmt + " | open /mnt/a.img: EACCES",
		"runcon " + mgmt + " | open /mnt/b.img: EACCES",
		"runcon " + mgmt + " | open " + key + ": ok",
		"runcon " + mgmt + " | signal other guest: EACCES",
		"runcon " + mgmt + " | execmem: EACCES",

		"supervise " + mgmt + " | context " + mgmt,
		"supervise " + mgmt + " | open /mnt/a.img: EACCES",
		"supervise " + mgmt + " | open " + key + ": ok",
		"done",
	}
	got := map[string]bool{}
	for _, l := range lines {
		got[l] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("console lacks %q", w)
		}
	}
}
