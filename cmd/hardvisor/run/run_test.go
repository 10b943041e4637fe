package run

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func head(machine, accel string, extra ...string) []string {
	a := []string{"qemu-system-x86_64", "-name", "hardvisor", "-nodefaults", "-no-user-config", "-display", "none",
		"-machine", machine, "-accel", accel}
	a = append(a, extra...)
	return append(a, "-m", "1024", "-smp", "1",
		"-chardev", "stdio,id=console,mux=on,signal=off", "-serial", "chardev:console",
		"-mon", "chardev=console,mode=readline")
}

func join(parts ...[]string) []string {
	var a []string
	for _, p := range parts {
		a = append(a, p...)
	}
	return a
}

var (
	ovmf = []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive", "if=pflash,format=raw,unit=1,file=/st/OVMF_VARS.fd",
	}
	plainNIC = []string{"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:8443-:8443",
		"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile="}
)

func TestArgs(t *testing.T) {
	t.Setenv("HARDVISOR_KVM", "")
	for _, c := range []struct {
		name string
		opts Options
		want []string
	}{
		{
			name: "kernel",
			opts: Options{Dir: "out", Cmdline: "console=ttyS0 quiet"},
			want: join(head("q35", "tcg"),
				[]string{"-kernel", "out/vmlinuz", "-initrd", "out/initramfs.img", "-append", "console=ttyS0 quiet"},
				plainNIC),
		},
		{
			name: "usb",
			opts: Options{Media: USB, Dir: "/o,ut", StateDir: "/st"},
			want: join(head("q35", "tcg"), ovmf,
				[]string{"-drive", "file=/o,,ut/hardvisor.img,format=raw,if=none,id=disk0,snapshot=on",
					"-device", "qemu-xhci,id=xhci",
					"-device", "usb-storage,bus=xhci.0,drive=disk0,removable=on,bootindex=1"},
				plainNIC),
		},
		{
			name: "iso with port, memory and kvm",
			opts: Options{Media: ISO, Dir: "out", StateDir: "/st", Port: 9443, Memory: 2048, Accel: "kvm", QEMU: "/usr/bin/qemu"},
			want: join([]string{"/usr/bin/qemu", "-name", "hardvisor", "-nodefaults", "-no-user-config", "-display", "none",
				"-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "2048", "-smp", "1",
				"-chardev", "stdio,id=console,mux=on,signal=off", "-serial", "chardev:console",
				"-mon", "chardev=console,mode=readline"}, ovmf,
				[]string{"-drive", "file=out/hardvisor.iso,format=raw,if=none,id=disk0,readonly=on,media=cdrom",
					"-device", "ide-cd,drive=disk0,bootindex=1",
					"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:9443-:8443",
					"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile="}),
		},
		{
			name: "pxe with secure boot",
			opts: Options{Media: PXE, Dir: "out", StateDir: "/st", SecureBoot: true, BootURL: "http://10.0.2.2:4000/boot.ipxe"},
			want: join(head("q35,smm=on", "tcg"),
				[]string{"-global", "driver=cfi.pflash01,property=secure,value=on",
					"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd",
					"-drive", "if=pflash,format=raw,unit=1,file=/st/OVMF_VARS.fd",
					"-netdev", "user,id=net0,bootfile=http://10.0.2.2:4000/boot.ipxe,hostfwd=tcp:127.0.0.1:8443-:8443",
					"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,bootindex=1"}),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Args(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("argv\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestArgsKVMFromEnvironment(t *testing.T) {
	t.Setenv("HARDVISOR_KVM", "1")
	got, err := Args(Options{Dir: "out", Cmdline: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, " "); !strings.Contains(s, "-accel kvm -cpu host") {
		t.Errorf("HARDVISOR_KVM=1: argv %q does not select kvm", s)
	}
}

func TestArgsErrors(t *testing.T) {
	_, err := Args(Options{Media: "floppy", Port: 70000, Memory: -1, Accel: "hvf"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`media: "floppy" is not one of kernel, usb, iso, pxe`, "dir: required",
		"port: 70000", "memory: -1", `accel: "hvf"`, "stateDir: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	_, err = Args(Options{Dir: "out", SecureBoot: true})
	for _, want := range []string{"secure boot: needs", "cmdline: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("kernel + secure boot: error %v does not contain %q", err, want)
		}
	}
	if _, err = Args(Options{Media: PXE, Dir: "out", StateDir: "/st"}); err == nil || !strings.Contains(err.Error(), "bootURL: required") {
		t.Errorf("pxe without boot URL: %v", err)
	}
}

func TestRunMissingArtifact(t *testing.T) {
	dir := t.TempDir()
	for media, file := range map[Media]string{Kernel: "vmlinuz", USB: "hardvisor.img", ISO: "hardvisor.iso", PXE: "pxe/boot.ipxe"} {
		err := Run(context.Background(), Options{Media: media, Dir: dir}, nil, io.Discard, io.Discard)
		want := filepath.Join(dir, file) + " is missing: run make image"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", media, err, want)
		}
	}
}

// TestRunStartsQEMU runs a stand-in emulator that records its argv: Run
// fills in the command line, the OVMF variables and the PXE server.
func TestRunStartsQEMU(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pxe"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pxe", "boot.ipxe"), []byte("#!ipxe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(OVMFVars); err != nil {
		t.Skipf("%s: %v (apt-get install ovmf)", OVMFVars, err)
	}
	fake := filepath.Join(t.TempDir(), "qemu")
	argvFile := filepath.Join(t.TempDir(), "argv")
	// The stand-in checks the variable store exists and fetches boot.ipxe
	// from the announced server (10.0.2.2 is 127.0.0.1 on the host).
	script := `#!/bin/sh
printf '%s\n' "$@" > ` + argvFile + `
for a in "$@"; do case "$a" in
  *unit=1,file=*) test -s "${a#*unit=1,file=}" || exit 3 ;;
  *bootfile=*) u="${a#*bootfile=}"; u="${u%%,*}" ;;
esac; done
exec curl -sf "$(echo "$u" | sed s/10.0.2.2/127.0.0.1/)"
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/usr/bin/curl"); err != nil {
		t.Skip("curl not installed")
	}
	var out, errOut strings.Builder
	if err := Run(context.Background(), Options{Media: PXE, Dir: dir, QEMU: fake}, nil, &out, &errOut); err != nil {
		t.Fatalf("Run: %v\n%s", err, errOut.String())
	}
	if out.String() != "#!ipxe\n" {
		t.Errorf("stand-in fetched %q, want the bundle's boot.ipxe", out.String())
	}
	if !strings.Contains(errOut.String(), "path=/boot.ipxe status=200") {
		t.Errorf("server log lacks the request:\n%s", errOut.String())
	}
	b, _ := os.ReadFile(argvFile)
	if !strings.Contains(string(b), "bootfile=http://10.0.2.2:") {
		t.Errorf("argv lacks the boot URL:\n%s", b)
	}
}
