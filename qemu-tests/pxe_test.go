package qemutests

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"hardvisor.dev/hardvisor/cmd/hardvisor/run"
	"hardvisor.dev/hardvisor/cmd/hardvisor/serve"
	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/pxe"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// TestPXEBootBIOS boots the PXE bundle the way a bare-metal host boots it
// from the network: SeaBIOS runs the virtio-net card's iPXE ROM, user-net's
// DHCP server announces boot.ipxe on the test's HTTP server (the handler of
// `hardvisor serve`), and the script loads vmlinuz and initramfs.img with
// the full command line.
func TestPXEBootBIOS(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	srv := startBootServer(t, pxeBundle(t, dir))
	vm := qemu.StartT(t, qemu.Options{
		NICs:     []qemu.NIC{{BootFile: srv.url(pxe.Script), BootIndex: 1}},
		NoReboot: true,
	})
	_, at, err := vm.ExpectAt(readyLine(m.Version), bootTimeout)
	if err != nil {
		t.Fatalf("%v\nrequests: %v", err, srv.log.all())
	}
	t.Logf("ready %.1f s after QEMU started", at.Seconds())
	srv.log.requireOK(t, pxe.Script, pxe.Kernel, pxe.Initramfs)
	powerDown(t, vm)
}

// TestPXEBootUEFI is the same under OVMF: UEFI iPXE takes the script's
// other branch and chains the UKI, passing the full command line (systemd's
// stub would otherwise boot with an empty one, and the console line that
// the ready line is read from would be missing).
func TestPXEBootUEFI(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	srv := startBootServer(t, pxeBundle(t, dir))
	vm := qemu.StartT(t, qemu.Options{
		Firmware: &qemu.Firmware{},
		NICs:     []qemu.NIC{{BootFile: srv.url(pxe.Script), BootIndex: 1}},
		NoReboot: true,
	})
	_, at, err := vm.ExpectAt(readyLine(m.Version), bootTimeout)
	if err != nil {
		t.Fatalf("%v\nrequests: %v", err, srv.log.all())
	}
	t.Logf("ready %.1f s after QEMU started", at.Seconds())
	srv.log.requireOK(t, pxe.Script, pxe.UKI)
	powerDown(t, vm)
}

// TestPXECmdlineUEFI boots the debug build's bundle under OVMF and reads
// /proc/cmdline in its shell: the chained UKI runs with the full canonical
// command line. iPXE puts the image name in front of the arguments it
// passes (LoadOptions), so the kernel also sees "hardvisor.efi", a word it
// ignores.
func TestPXECmdlineUEFI(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT_DEBUG")
	m := readManifest(t, dir)
	srv := startBootServer(t, pxeBundle(t, dir))
	vm := qemu.StartT(t, qemu.Options{
		Firmware: &qemu.Firmware{},
		NICs:     []qemu.NIC{{BootFile: srv.url(pxe.Script), BootIndex: 1}},
		NoReboot: true,
	})
	expect(t, vm, readyLine(m.Version), bootTimeout)
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	if err := vm.Send("cat /proc/cmdline\n"); err != nil {
		t.Fatal(err)
	}
	want := pxe.UKI + " " + cmdline(t, dir)
	expect(t, vm, regexp.MustCompile(`(^|\$ )`+regexp.QuoteMeta(want)+`\s*$`), bootTimeout)
	if err := vm.Send("kill -s SIGUSR2 1\n"); err != nil { // PID 1 powers off on SIGUSR2
		t.Fatal(err)
	}
	expect(t, vm, regexp.MustCompile(`hardvisor: poweroff: syncing disks`), shutdownTimeout)
	if _, err := vm.Wait(shutdownTimeout); err != nil {
		t.Fatal(err)
	}
}

// pxeBundle returns the PXE bundle of the build in dir: dir/pxe when the
// build wrote one, otherwise one written now from dir's artifacts.
func pxeBundle(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, pxe.Dir, pxe.Script)); err == nil {
		return filepath.Join(dir, pxe.Dir)
	}
	tmp := t.TempDir()
	err := pxe.Write(tmp, pxe.Inputs{
		Kernel:    filepath.Join(dir, build.Kernel),
		Initramfs: filepath.Join(dir, build.Initramfs),
		UKI:       filepath.Join(dir, build.UKI),
		Cmdline:   cmdline(t, dir),
	})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(tmp, pxe.Dir)
}

// bootServer is the `hardvisor serve` handler on 127.0.0.1, with its
// request log kept for assertions.
type bootServer struct {
	port int
	log  *requestLog
}

// url is the address under which the guest reaches file on the server.
func (s *bootServer) url(file string) string {
	return fmt.Sprintf("http://%s:%d/%s", run.GuestHost, s.port, file)
}

func startBootServer(t *testing.T, bundle string) *bootServer {
	t.Helper()
	root, err := os.OpenRoot(bundle)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &requestLog{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve.Serve(ctx, l, serve.Handler(root, slog.New(log))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("boot server: %v", err)
		}
		root.Close()
	})
	return &bootServer{port: l.Addr().(*net.TCPAddr).Port, log: log}
}

// requestLog is a slog.Handler that keeps the boot server's request records
// and copies them to the test log.
type requestLog struct {
	t    *testing.T
	mu   sync.Mutex
	reqs []string // "GET /vmlinuz 200 8247232"
}

func (l *requestLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *requestLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *requestLog) WithGroup(string) slog.Handler            { return l }

func (l *requestLog) Handle(_ context.Context, r slog.Record) error {
	a := map[string]string{}
	r.Attrs(func(at slog.Attr) bool {
		a[at.Key] = at.Value.String()
		return true
	})
	line := fmt.Sprintf("%s %s %s %s", a["method"], a["path"], a["status"], a["bytes"])
	l.mu.Lock()
	l.reqs = append(l.reqs, line)
	l.mu.Unlock()
	l.t.Logf("boot server: %s in %s", line, a["duration"])
	return nil
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// requireOK checks that every file was fetched in full with GET and 200.
func (l *requestLog) requireOK(t *testing.T, files ...string) {
	t.Helper()
	reqs := l.all()
	for _, f := range files {
		if !slices.ContainsFunc(reqs, func(r string) bool { return strings.HasPrefix(r, "GET /"+f+" 200 ") }) {
			t.Errorf("no successful GET /%s; requests: %q", f, reqs)
		}
	}
}
