package qemu

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests boot the Debian kernel with the floor initramfs under real
// QEMU, one VM at a time.

var floorMarker = regexp.MustCompile(`^` + regexp.QuoteMeta(FloorMarker) + `$`)

// testKernel returns $HARDVISOR_TEST_KERNEL or the newest /boot/vmlinuz-*,
// and skips the test when there is none.
func testKernel(tb testing.TB) string {
	tb.Helper()
	if k := os.Getenv("HARDVISOR_TEST_KERNEL"); k != "" {
		return k
	}
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		tb.Skip("no kernel in /boot/vmlinuz-*: apt-get install linux-image-amd64 or set HARDVISOR_TEST_KERNEL")
	}
	slices.SortFunc(ks, versionCompare)
	return ks[len(ks)-1]
}

// versionCompare orders strings with their digit runs compared as numbers,
// so vmlinuz-6.1.0-10-amd64 is newer than vmlinuz-6.1.0-9-amd64.
func versionCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na, _ := strconv.Atoi(a[:da])
			nb, _ := strconv.Atoi(b[:db])
			if na != nb {
				return na - nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

var floor struct {
	once sync.Once
	path string
	err  error
}

// floorInitramfs builds the floor initramfs once for the test binary.
func floorInitramfs(tb testing.TB) string {
	tb.Helper()
	floor.once.Do(func() {
		dir, err := os.MkdirTemp("", "hvfloor-")
		if err != nil {
			floor.err = err
			return
		}
		floor.path, floor.err = BuildFloorInitramfs(dir)
	})
	if floor.err != nil {
		tb.Fatalf("floor initramfs: %v", floor.err)
	}
	return floor.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if floor.path != "" {
		os.RemoveAll(filepath.Dir(floor.path))
	}
	os.Exit(code)
}

func floorOptions(tb testing.TB) Options {
	return Options{
		Kernel: testKernel(tb),
		Initrd: floorInitramfs(tb),
		Append: "console=ttyS0 quiet",
	}
}

func TestVersionCompare(t *testing.T) {
	ks := []string{"vmlinuz-6.1.0-10-amd64", "vmlinuz-6.1.0-9-amd64", "vmlinuz-5.10.0-28-amd64", "vmlinuz-6.1.0-57-amd64"}
	slices.SortFunc(ks, versionCompare)
	want := []string{"vmlinuz-5.10.0-28-amd64", "vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "vmlinuz-6.1.0-57-amd64"}
	if !slices.Equal(ks, want) {
		t.Errorf("sorted = %q, want %q", ks, want)
	}
}

func TestFloorDirectBoot(t *testing.T) {
	vm := StartT(t, floorOptions(t))
	_, at, err := vm.ExpectAt(floorMarker, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%q after %s", FloorMarker, at.Round(time.Millisecond))
	if code, err := vm.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("wait for power-off: status %d, %v", code, err)
	}
	t.Logf("powered off after %s", vm.Elapsed().Round(time.Millisecond))
}

// TestUEFIDirectBoot proves the OVMF argv: the firmware starts from its
// flash pair (variables copied per VM) and loads the kernel.
func TestUEFIDirectBoot(t *testing.T) {
	if _, err := os.Stat(OVMFCode); err != nil {
		t.Skipf("no OVMF: apt-get install ovmf (%v)", err)
	}
	opts := floorOptions(t)
	opts.Firmware = &Firmware{}
	vm := StartT(t, opts)
	vars, err := os.ReadFile(filepath.Join(vm.stateDir, varsFileName))
	if err != nil {
		t.Fatalf("per-VM variable store: %v", err)
	}
	if tmpl, _ := os.ReadFile(OVMFVars); len(vars) != len(tmpl) {
		t.Errorf("variable store is %d bytes, template %d", len(vars), len(tmpl))
	}
	_, at, err := vm.ExpectAt(floorMarker, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%q under OVMF after %s", FloorMarker, at.Round(time.Millisecond))
	if _, err := vm.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestExpectTimeoutCarriesTail(t *testing.T) {
	opts := floorOptions(t)
	// No such init and no root device: the kernel panics and hangs, QEMU
	// keeps running, so only the deadline can end the second Expect.
	opts.Append = "console=ttyS0 quiet rdinit=/nonexistent panic=0"
	vm := StartT(t, opts)
	if _, err := vm.Expect(regexp.MustCompile(`Kernel panic`), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := vm.Expect(regexp.MustCompile(`cannot match`), 3*time.Second)
	took := time.Since(start)
	var ee *ExpectError
	if !errors.As(err, &ee) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Expect = %v, want an *ExpectError matching ErrTimeout", err)
	}
	if took < 3*time.Second || took > 4*time.Second {
		t.Errorf("Expect with a 3s timeout returned after %s", took)
	}
	if !strings.Contains(err.Error(), "Kernel panic") || !strings.Contains(err.Error(), "--- console, last 40 lines ---") {
		t.Errorf("error does not carry the console tail:\n%v", err)
	}
	t.Logf("error returned after %s:\n%v", took.Round(time.Millisecond), err)
}

func TestExpectReturnsWhenQEMUExits(t *testing.T) {
	vm := StartT(t, floorOptions(t))
	start := time.Now()
	_, err := vm.Expect(regexp.MustCompile(`cannot match`), 120*time.Second)
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Expect = %v, want ErrExited", err)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("Expect returned %s after start; it should return when QEMU exits", took)
	}
	if !strings.Contains(err.Error(), FloorMarker) || !strings.Contains(err.Error(), "exit status 0") {
		t.Errorf("error lacks the console tail or the exit status:\n%v", err)
	}
}

// TestTwoNICsAndPersistentDisk starts the floor VM paused with two user-net
// NICs and two disks, checks through the monitor what QEMU built, writes to
// both disks through QEMU's block layer, boots, and checks that only the
// persistent disk kept the write, also for a second VM.
func TestTwoNICsAndPersistentDisk(t *testing.T) {
	dir := t.TempDir()
	persistent, scratch := filepath.Join(dir, "data.raw"), filepath.Join(dir, "scratch.raw")
	for _, p := range []string{persistent, scratch} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := floorOptions(t)
	opts.Disks = []Disk{
		{Path: persistent},
		{Path: scratch, Snapshot: true},
	}
	opts.NICs = []NIC{
		{HostFwd: []string{"tcp:127.0.0.1:0-:8443"}, NoROM: true},
		{MAC: "52:54:00:aa:bb:02", HostFwd: []string{"tcp:127.0.0.1:0-:9100"}},
	}
	opts.ExtraArgs = []string{"-S"} // paused until "cont"
	vm := StartT(t, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	hmp := func(vm *VM, cmd string) string {
		t.Helper()
		out, err := vm.HMP(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	net := hmp(vm, "info network")
	for _, want := range []string{"macaddr=52:54:00:12:34:56", "macaddr=52:54:00:aa:bb:02", "net0:", "net1:"} {
		if !strings.Contains(net, want) {
			t.Errorf("info network lacks %q:\n%s", want, net)
		}
	}
	usernet := hmp(vm, "info usernet")
	for _, guest := range []int{8443, 9100} {
		host := vm.HostPort(guest)
		if host == 0 {
			t.Fatalf("HostPort(%d) = 0", guest)
		}
		if !regexp.MustCompile(`HOST_FORWARD.*127\.0\.0\.1\s+` + strconv.Itoa(host) + `\s.*` + strconv.Itoa(guest)).MatchString(usernet) {
			t.Errorf("info usernet lacks the forward %d->%d:\n%s", host, guest, usernet)
		}
		c, err := dialTCP(host)
		if err != nil {
			t.Errorf("host port %d for guest port %d: %v", host, guest, err)
		} else {
			c.Close()
		}
	}
	// Write through QEMU's block layer, as the guest would.
	for _, disk := range []string{"disk0", "disk1"} {
		hmp(vm, "qemu-io "+disk+` "write -P 0xab 0 4096"`)
	}

	if _, err := vm.QMP(ctx, "cont", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect(floorMarker, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	pattern := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	if got, err := os.ReadFile(persistent); err != nil || !bytes.Equal(got[:4096], pattern(0xab)) {
		t.Errorf("persistent disk lost the write (err %v)", err)
	}
	if got, err := os.ReadFile(scratch); err != nil || !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Errorf("snapshot disk was modified (err %v)", err)
	}

	// A second VM on the same file adds to what the first wrote.
	opts.Name = t.Name() + "-second"
	opts.Disks = opts.Disks[:1]
	vm2 := StartT(t, opts)
	hmp(vm2, `qemu-io disk0 "write -P 0xcd 4096 4096"`)
	if err := vm2.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(persistent)
	if err != nil || !bytes.Equal(got[:4096], pattern(0xab)) || !bytes.Equal(got[4096:8192], pattern(0xcd)) {
		t.Errorf("persistent disk after two VMs does not hold both writes (err %v)", err)
	}
}

func dialTCP(port int) (net.Conn, error) {
	return net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
}

func TestStartErrors(t *testing.T) {
	ctx := t.Context()
	t.Run("qemu missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := Start(ctx, t, Options{Kernel: "/k"})
		if err == nil || err.Error() != "qemu-system-x86_64 not found: apt-get install qemu-system-x86" {
			t.Errorf("Start without qemu: %v", err)
		}
	})
	t.Run("OVMF missing", func(t *testing.T) {
		_, err := Start(ctx, t, Options{Firmware: &Firmware{Code: "/nonexistent/OVMF_CODE_4M.fd"}})
		want := "firmware.code: /nonexistent/OVMF_CODE_4M.fd not found: apt-get install ovmf"
		if err == nil || err.Error() != want {
			t.Errorf("Start without OVMF: %v, want %s", err, want)
		}
	})
	t.Run("qemu rejects the argv", func(t *testing.T) {
		opts := floorOptions(t)
		opts.ExtraArgs = []string{"-device", "no-such-device"}
		start := time.Now()
		_, err := Start(ctx, t, opts)
		if err == nil || !strings.Contains(err.Error(), "qemu exited at start") || !strings.Contains(err.Error(), "no-such-device") {
			t.Errorf("Start with a bad device: %v, want QEMU's own message", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("Start took %s to report a bad argv", time.Since(start))
		}
	})
}

// BenchmarkFloorBoot measures the boot-time floor: QEMU start to the floor
// marker, and to power-off.
func BenchmarkFloorBoot(b *testing.B) {
	opts := floorOptions(b)
	var ready, off, cpu time.Duration
	for i := 0; b.Loop(); i++ {
		opts.Name = "floor-bench-" + strconv.Itoa(i)
		vm, err := Start(b.Context(), b, opts)
		if err != nil {
			b.Fatal(err)
		}
		_, at, err := vm.ExpectAt(floorMarker, 60*time.Second)
		if err != nil {
			vm.Close()
			b.Fatal(err)
		}
		if _, err := vm.Wait(30 * time.Second); err != nil {
			vm.Close()
			b.Fatal(err)
		}
		ready += at
		off += vm.Elapsed()
		used := vm.state.UserTime() + vm.state.SystemTime()
		cpu += used
		b.Logf("run %d: ready %s, powered off %s, qemu cpu %s", i+1,
			at.Round(time.Millisecond), vm.Elapsed().Round(time.Millisecond), used.Round(time.Millisecond))
		vm.Close()
	}
	b.ReportMetric(float64(ready.Milliseconds())/float64(b.N), "ms-to-ready/op")
	b.ReportMetric(float64(off.Milliseconds())/float64(b.N), "ms-to-poweroff/op")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "qemu-cpu-ms/op")
}
