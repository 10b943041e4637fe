package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// TestDirectBoot boots out/vmlinuz + out/initramfs.img with the canonical
// command line: the host reaches ready with the built version and hostname,
// and powers off cleanly on the ACPI power button.
func TestDirectBoot(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	vm := directBoot(t, dir, nil)
	line := expect(t, vm, readyLine(m.Version), bootTimeout)
	want := regexp.MustCompile(`hostname=hardvisor profile=production modules=\d+ hardening=(\d+)/(\d+)`)
	if m := want.FindStringSubmatch(line[0]); m == nil || m[1] != m[2] {
		t.Errorf("ready line %q does not match %v with every hardening check passed", line[0], want)
	}
	powerDown(t, vm)
}

// TestUKIBootsUnderOVMF puts out/hardvisor.efi as EFI/BOOT/BOOTX64.EFI on a
// minimal FAT disk and boots it with OVMF: the UKI's own command line and
// initramfs bring the host to ready.
func TestUKIBootsUnderOVMF(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	disk := fatDisk(t, filepath.Join(dir, build.UKI))
	vm := qemu.StartT(t, qemu.Options{
		Firmware: &qemu.Firmware{},
		Disks:    []qemu.Disk{{Path: disk, BootIndex: 1}},
		NoReboot: true,
	})
	expect(t, vm, readyLine(m.Version), bootTimeout)
	powerDown(t, vm)
}

// fatDisk makes a 64 MiB FAT disk image holding efi as the removable-media
// boot loader path, with Debian's mkfs.vfat and mtools.
func fatDisk(t *testing.T, efi string) string {
	t.Helper()
	mkfs := needTool(t, "mkfs.vfat", "dosfstools")
	needTool(t, "mcopy", "mtools")
	img := filepath.Join(t.TempDir(), "esp.img")
	for _, argv := range [][]string{
		{mkfs, "-C", "-F", "32", "-n", "HVTEST", img, "65536"},
		{"mmd", "-i", img, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", img, efi, "::/EFI/BOOT/BOOTX64.EFI"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	if _, err := os.Stat(img); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestDebugShell boots the debug profile: once ready, a shell answers on the
// serial console, sees the canonical command line, and SIGUSR2 to PID 1 powers
// the host off cleanly.
func TestDebugShell(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT_DEBUG")
	m := readManifest(t, dir)
	vm := directBoot(t, dir, nil)
	expect(t, vm, readyLine(m.Version), bootTimeout)
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	send := func(s string) {
		if err := vm.Send(s); err != nil {
			t.Fatal(err)
		}
	}
	// The shell's prompt may share a line with a command's output, and the
	// console echoes what is typed: match output the typed text cannot contain.
	send("echo hv-$((6*7))-ok\n")
	expect(t, vm, regexp.MustCompile(`(^|\$ )hv-42-ok$`), bootTimeout)
	send("cat /proc/cmdline\n")
	expect(t, vm, regexp.MustCompile(`(^|\$ )`+regexp.QuoteMeta(cmdline(t, dir))+`\s*$`), bootTimeout)
	send("kill -s SIGUSR2 1\n") // PID 1 powers off on SIGUSR2
	expect(t, vm, regexp.MustCompile(`hardvisor: poweroff: syncing disks`), shutdownTimeout)
	if _, err := vm.Wait(shutdownTimeout); err != nil {
		t.Fatal(err)
	}
}
