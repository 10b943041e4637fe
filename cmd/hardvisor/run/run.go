// Package run is `hardvisor run`: it boots the built artifacts in QEMU on
// this machine for trying them out, with the serial console on the terminal,
// the management port forwarded to localhost and every disk opened as a
// throwaway snapshot, so the artifacts are never modified.
//
// Args builds the QEMU command line as a pure function of Options; Run does
// the I/O (state directory, OVMF variables, the PXE server, the process).
// The QEMU test harness (qemu-tests/qemu) builds its own, larger command
// lines for tests; this package is deliberately small and importable.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hardvisor.dev/hardvisor/cmd/hardvisor/serve"
	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/pxe"
)

// Media is what the machine boots from.
type Media string

// The media `hardvisor run` boots.
const (
	// Kernel is direct kernel boot of vmlinuz + initramfs.img with the
	// canonical command line (SeaBIOS, the fastest way in).
	Kernel Media = "kernel"
	// USB is the disk image as a USB stick under OVMF.
	USB Media = "usb"
	// ISO is the ISO image as a CD (virtual media) under OVMF.
	ISO Media = "iso"
	// PXE is network boot under OVMF: iPXE fetches pxe/boot.ipxe over HTTP
	// from a server Run starts on 127.0.0.1.
	PXE Media = "pxe"
)

// AllMedia lists every Media, in the order usage text shows them.
var AllMedia = []Media{Kernel, USB, ISO, PXE}

// Defaults for fields of Options left at their zero value.
const (
	DefaultQEMU   = "qemu-system-x86_64"
	DefaultPort   = 8443 // also the guest's management port
	DefaultMemory = 1024 // MiB
	// GuestHost is the address under which a user-net guest reaches the
	// host's 127.0.0.1.
	GuestHost = "10.0.2.2"
)

// Debian's OVMF (package ovmf).
const (
	OVMFCode         = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars         = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	OVMFSnakeoilCode = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"
	OVMFSnakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// varsFile is the VM's copy of the OVMF variable store in StateDir.
const varsFile = "OVMF_VARS.fd"

// Options describe one run.
type Options struct {
	// Media is what to boot; empty means Kernel.
	Media Media
	// Dir is the build output directory.
	Dir string
	// SecureBoot boots OVMF with Debian's snakeoil key enrolled and Secure
	// Boot enabled (not for Kernel: OVMF would verify the bare kernel).
	SecureBoot bool
	// Port is the host port on 127.0.0.1 forwarded to the guest's
	// management port 8443; 0 means DefaultPort.
	Port int
	// Memory is the guest RAM in MiB; 0 means DefaultMemory.
	Memory int
	// QEMU is the emulator; empty means DefaultQEMU.
	QEMU string
	// Accel is "tcg" or "kvm"; empty means kvm when HARDVISOR_KVM=1 and tcg
	// otherwise (this project's machines have an unusable /dev/kvm, so
	// nothing probes it).
	Accel string

	// Set by Run before it calls Args:

	// StateDir holds the VM's OVMF variable store (media other than Kernel).
	StateDir string
	// Cmdline is the canonical command line (Kernel).
	Cmdline string
	// BootURL is the boot file user-net's DHCP server announces (PXE).
	BootURL string
}

// Args returns the QEMU argv (argv[0] is the emulator) for o. It reads
// nothing but HARDVISOR_KVM (when o.Accel is empty).
func Args(o Options) ([]string, error) {
	media := o.Media
	if media == "" {
		media = Kernel
	}
	var errs []error
	if !validMedia(media) {
		errs = append(errs, fmt.Errorf("media: %q is not one of %s", media, mediaList()))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("dir: required"))
	}
	if media == Kernel && o.SecureBoot {
		errs = append(errs, errors.New("secure boot: needs a medium the firmware verifies (usb, iso or pxe), not a bare kernel"))
	}
	if media == Kernel && o.Cmdline == "" {
		errs = append(errs, errors.New("cmdline: required for kernel boot"))
	}
	if media != Kernel && o.StateDir == "" {
		errs = append(errs, errors.New("stateDir: required for OVMF (the variable store)"))
	}
	if media == PXE && o.BootURL == "" {
		errs = append(errs, errors.New("bootURL: required for pxe"))
	}
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: %d is not a TCP port", o.Port))
	}
	if o.Memory < 0 {
		errs = append(errs, fmt.Errorf("memory: %d MiB is negative", o.Memory))
	}
	accel := o.Accel
	if accel == "" {
		accel = "tcg"
		if os.Getenv("HARDVISOR_KVM") == "1" {
			accel = "kvm"
		}
	}
	if accel != "tcg" && accel != "kvm" {
		errs = append(errs, fmt.Errorf("accel: %q is not tcg or kvm", accel))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	a := []string{or(o.QEMU, DefaultQEMU), "-name", "hardvisor", "-nodefaults", "-no-user-config", "-display", "none"}
	machine := "q35"
	if o.SecureBoot {
		machine += ",smm=on" // Debian's Secure Boot OVMF requires SMM
	}
	a = append(a, "-machine", machine, "-accel", accel)
	if accel == "kvm" {
		a = append(a, "-cpu", "host")
	}
	memory := o.Memory
	if memory == 0 {
		memory = DefaultMemory
	}
	a = append(a, "-m", strconv.Itoa(memory), "-smp", "1")
	// The serial console and QEMU's monitor share the terminal: Ctrl-A X
	// quits, Ctrl-A C switches to the monitor, and ^C goes to the guest.
	a = append(a, "-chardev", "stdio,id=console,mux=on,signal=off", "-serial", "chardev:console",
		"-mon", "chardev=console,mode=readline")

	if media != Kernel {
		code := OVMFCode
		if o.SecureBoot {
			code = OVMFSnakeoilCode
			a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(code),
			"-drive", "if=pflash,format=raw,unit=1,file="+escape(filepath.Join(o.StateDir, varsFile)))
	}
	switch media {
	case Kernel:
		a = append(a, "-kernel", filepath.Join(o.Dir, build.Kernel),
			"-initrd", filepath.Join(o.Dir, build.Initramfs), "-append", o.Cmdline)
	case USB:
		a = append(a, "-drive", "file="+escape(filepath.Join(o.Dir, build.DiskImage))+",format=raw,if=none,id=disk0,snapshot=on",
			"-device", "qemu-xhci,id=xhci",
			"-device", "usb-storage,bus=xhci.0,drive=disk0,removable=on,bootindex=1")
	case ISO:
		a = append(a, "-drive", "file="+escape(filepath.Join(o.Dir, build.ISO))+",format=raw,if=none,id=disk0,readonly=on,media=cdrom",
			"-device", "ide-cd,drive=disk0,bootindex=1")
	}

	port := o.Port
	if port == 0 {
		port = DefaultPort
	}
	netdev := "user,id=net0"
	if media == PXE {
		netdev += ",bootfile=" + escape(o.BootURL)
	}
	netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", port, DefaultPort)
	nic := "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"
	if media == PXE {
		nic += ",bootindex=1" // its option ROM is iPXE (Debian's ipxe-qemu)
	} else {
		nic += ",romfile=" // no network boot to try: skip iPXE
	}
	a = append(a, "-netdev", netdev, "-device", nic)
	return a, nil
}

// Run boots o in QEMU with the serial console on stdin/stdout and returns
// when QEMU exits (Ctrl-A X, or the guest powers off) or ctx is done.
// Progress and the PXE server's request log go to stderr. Run fills in the
// Options fields marked as set by Run.
func Run(ctx context.Context, o Options, stdin io.Reader, stdout, stderr io.Writer) error {
	if o.Media == "" {
		o.Media = Kernel
	}
	if !validMedia(o.Media) {
		return fmt.Errorf("media %q is not one of %s", o.Media, mediaList())
	}
	need := map[Media]string{Kernel: build.Kernel, USB: build.DiskImage, ISO: build.ISO, PXE: filepath.Join(build.PXEDir, pxe.Script)}[o.Media]
	if _, err := os.Stat(filepath.Join(o.Dir, need)); err != nil {
		return fmt.Errorf("%s: %s is missing: run make image (or hardvisor build -o %s)", o.Media, filepath.Join(o.Dir, need), o.Dir)
	}
	if o.Media == Kernel {
		b, err := os.ReadFile(filepath.Join(o.Dir, build.Cmdline))
		if err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		o.Cmdline = strings.TrimSpace(string(b))
	}

	state, err := os.MkdirTemp("", "hardvisor-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	o.StateDir = state
	if o.Media != Kernel {
		vars := OVMFVars
		if o.SecureBoot {
			vars = OVMFSnakeoilVars
		}
		if err := copyFile(vars, filepath.Join(state, varsFile)); err != nil {
			return fmt.Errorf("OVMF variables (apt-get install ovmf): %w", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// stopServer ends the PXE server (if any) once ctx is cancelled.
	stopServer := func() error { return nil }
	if o.Media == PXE {
		dir := filepath.Join(o.Dir, build.PXEDir)
		root, err := os.OpenRoot(dir)
		if err != nil {
			return fmt.Errorf("pxe: %w", err)
		}
		defer root.Close()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("pxe: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		o.BootURL = fmt.Sprintf("http://%s:%d/%s", GuestHost, port, pxe.Script)
		fmt.Fprintf(stderr, "hardvisor run: serving %s on http://127.0.0.1:%d/ (the guest's %s)\n", dir, port, o.BootURL)
		log := slog.New(slog.NewTextHandler(stderr, nil))
		served := make(chan error, 1)
		go func() { served <- serve.Serve(ctx, l, serve.Handler(root, log)) }()
		stopServer = func() error { cancel(); return <-served }
	}

	argv, err := Args(o)
	if err != nil {
		return errors.Join(err, stopServer())
	}
	port := o.Port
	if port == 0 {
		port = DefaultPort
	}
	fmt.Fprintf(stderr, "hardvisor run: booting %s from %s; management port on 127.0.0.1:%d; Ctrl-A X quits\n", o.Media, o.Dir, port)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// QEMU restores the terminal when it terminates on SIGTERM; SIGKILL is
	// the fallback.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = nil // stopped on purpose
	} else if err != nil {
		err = fmt.Errorf("qemu: %w", err)
	}
	return errors.Join(err, stopServer())
}

// ParseMedia returns the Media named s, or an error listing the names.
func ParseMedia(s string) (Media, error) {
	for _, m := range AllMedia {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%q is not one of %s", s, mediaList())
}

func validMedia(m Media) bool {
	_, err := ParseMedia(string(m))
	return err == nil
}

func mediaList() string {
	var s []string
	for _, m := range AllMedia {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}

// escape doubles commas, QEMU's quoting inside an option value.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
