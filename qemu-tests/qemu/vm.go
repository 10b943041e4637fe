// Package qemu boots the artifacts the hardvisor builder produced under
// qemu-system-x86_64 and lets integration tests talk to them: the serial
// console as a stream with deadline-bound Expect, QMP, port forwards and
// persistent or throwaway disks. QEMU runs under TCG unless the environment
// has HARDVISOR_KVM=1.
//
// A test typically does
//
//	vm := qemu.StartT(t, qemu.Options{Kernel: k, Initrd: i, Append: "console=ttyS0"})
//	if _, err := vm.Expect(regexp.MustCompile(`hardvisor: ready`), time.Minute); err != nil {
//		t.Fatal(err) // the error carries the last console lines
//	}
package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// startTimeout bounds how long QEMU may take to answer QMP after exec.
	startTimeout = 30 * time.Second
	// drainTimeout bounds the wait for the console pipe to close after
	// QEMU exited.
	drainTimeout = 5 * time.Second
	// stderrMax bounds QEMU's own diagnostics kept for error messages.
	stderrMax = 64 << 10
)

// Environment variables the harness reads (besides HARDVISOR_KVM, see
// Options.Accel).
const (
	// LogDirEnv names the directory where every VM's console is written as
	// <name>.log (<name>.2.log, ... for repeated names), with the argv at
	// the top and QEMU's exit status and stderr at the end.
	LogDirEnv = "HARDVISOR_TEST_LOGS"
	// MaxVMsEnv is the number of VMs that may run at once on this machine,
	// across all test processes (default DefaultMaxVMs); Start waits for a
	// free slot. Under TCG every vCPU wants a core: more VMs than cores
	// make boots slow and timings meaningless.
	MaxVMsEnv = "HARDVISOR_MAX_VMS"
)

// DefaultMaxVMs is the machine-wide VM limit when MaxVMsEnv is unset.
const DefaultMaxVMs = 2

// Logger receives the harness's progress messages (argv, chosen ports,
// exit). testing.TB satisfies it.
type Logger interface {
	Logf(format string, args ...any)
}

// VM is a running QEMU process. Its methods are safe for concurrent use,
// but Expect calls share one cursor and are meant to be made in sequence.
type VM struct {
	name     string
	argv     []string
	log      Logger
	cmd      *exec.Cmd
	started  time.Time
	ended    time.Time // set before done is closed
	ports    map[int]int
	stateDir string
	ownState bool
	logFile  *os.File

	con    *console
	stderr *console

	sendMu sync.Mutex
	stdin  *os.File

	done   chan struct{} // closed when QEMU exited and its output is drained
	state  *os.ProcessState
	waitEr error

	closeOnce sync.Once
	closeErr  error
}

// StartT starts a VM for a test: its name defaults to the test's, it is
// killed when the test ends, and the console tail is logged if the test
// failed. A VM that cannot start fails the test.
func StartT(t testing.TB, opts Options) *VM {
	t.Helper()
	if opts.Name == "" {
		opts.Name = t.Name()
	}
	vm, err := Start(t.Context(), t, opts)
	if err != nil {
		t.Fatalf("start VM: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: console:\n%s", vm.name, tailBlock(vm.Tail(TailLines)))
		}
		if err := vm.Close(); err != nil {
			t.Errorf("close VM: %v", err)
		}
	})
	return vm
}

// Start runs QEMU for opts and returns once QEMU answers QMP (its machine
// is built; a bad option is reported here with QEMU's stderr). The VM is
// killed when ctx is done or Close is called. log may be nil.
func Start(ctx context.Context, log Logger, opts Options) (_ *VM, err error) {
	if log == nil {
		log = discard{}
	}
	opts.Name = value(sanitize(opts.Name), DefaultName)
	bin, err := findQEMU(opts.QEMU)
	if err != nil {
		return nil, err
	}
	if err := checkInputs(opts); err != nil {
		return nil, err
	}

	vm := &VM{
		name:   opts.Name,
		log:    log,
		con:    newConsole(MaxConsole, time.Now),
		stderr: newConsole(stderrMax, time.Now),
		done:   make(chan struct{}),
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// Wait for a slot first, so free host ports are picked right before QEMU binds them.
	slot, err := acquireSlot(ctx, func(limit int) {
		log.Logf("%s: waiting for one of %d VM slots (%s)", vm.name, limit, MaxVMsEnv)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vm.name, err)
	}
	started := false
	defer func() {
		if !started {
			slot.release() // otherwise released when QEMU exits
		}
	}()

	if opts.StateDir == "" {
		// Under os.TempDir, not t.TempDir: the QMP socket path must stay short.
		dir, err := os.MkdirTemp("", "hvvm-")
		if err != nil {
			return nil, fmt.Errorf("%s: create state directory: %w", vm.name, err)
		}
		opts.StateDir, vm.ownState = dir, true
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
	} else if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: create state directory: %w", vm.name, err)
	}
	vm.stateDir = opts.StateDir
	if fw := opts.Firmware; fw != nil {
		if err := copyIfMissing(value(fw.Vars, OVMFVars), varsPath(opts.StateDir)); err != nil {
			return nil, fmt.Errorf("%s: UEFI variable store: %w", vm.name, err)
		}
	}
	opts, vm.ports, err = resolveHostPorts(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vm.name, err)
	}
	vm.argv, err = Args(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vm.name, err)
	}

	var sinks []io.Writer
	if dir := os.Getenv(LogDirEnv); dir != "" {
		f, err := createLog(dir, vm.name)
		if err != nil {
			return nil, fmt.Errorf("%s: console log: %w", vm.name, err)
		}
		fmt.Fprintf(f, "# %s\n", strings.Join(vm.argv, " "))
		vm.logFile = f
		sinks = append(sinks, f)
		cleanup = append(cleanup, func() { f.Close() })
	}
	sinks = append(sinks, opts.Console)

	log.Logf("%s: %s", vm.name, strings.Join(vm.argv, " "))
	if vm.logFile != nil {
		log.Logf("%s: console log: %s", vm.name, vm.logFile.Name())
	}
	if len(vm.ports) > 0 {
		log.Logf("%s: host ports (guest:host): %v", vm.name, vm.ports)
	}
	if err := vm.spawn(ctx, bin, slot, sinks); err != nil {
		return nil, err
	}
	started = true
	cleanup = append(cleanup, func() { vm.kill(); <-vm.done; vm.stdin.Close() })
	if err := vm.waitReady(ctx); err != nil {
		return nil, err
	}
	return vm, nil
}

// spawn runs QEMU with the serial console and stderr on pipes read into
// the VM's buffers, and starts the goroutines that reap it (releasing slot)
// and kill it when ctx is done.
func (vm *VM) spawn(ctx context.Context, bin string, slot *slot, sinks []io.Writer) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%s: console input pipe: %w", vm.name, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return fmt.Errorf("%s: console output pipe: %w", vm.name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return fmt.Errorf("%s: stderr pipe: %w", vm.name, err)
	}
	vm.stdin = inW
	vm.cmd = exec.Command(bin, vm.argv[1:]...)
	vm.cmd.Stdin, vm.cmd.Stdout, vm.cmd.Stderr = inR, outW, errW
	vm.cmd.SysProcAttr = sysProcAttr()

	vm.started = time.Now()
	err = vm.cmd.Start()
	// The child has its copies; keeping ours would hide its exit from the readers.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return fmt.Errorf("%s: run %s: %w", vm.name, bin, err)
	}

	conDone := make(chan struct{})
	go func() {
		defer close(conDone)
		vm.con.readFrom(outR, sinks...)
		outR.Close()
	}()
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		vm.stderr.readFrom(errR)
		errR.Close()
	}()
	go func() {
		err := vm.cmd.Wait()
		ended := time.Now()
		slot.release()
		// The pipes close with QEMU; the timeout only matters if something
		// QEMU spawned still holds them.
		drain := time.NewTimer(drainTimeout)
		for _, c := range []chan struct{}{conDone, errDone} {
			select {
			case <-c:
			case <-drain.C:
			}
		}
		drain.Stop()
		vm.state, vm.waitEr, vm.ended = vm.cmd.ProcessState, err, ended
		close(vm.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			vm.kill()
		case <-vm.done:
		}
	}()

	return nil
}

// waitReady returns once QEMU answers QMP, which it does only after it
// built the machine from the argv, or reports why it did not.
func (vm *VM) waitReady(ctx context.Context) error {
	readyCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	go func() {
		select {
		case <-vm.done:
			cancel()
		case <-readyCtx.Done():
		}
	}()
	if _, err := vm.QMP(readyCtx, "query-status", nil); err != nil {
		// A dying QEMU can drop the QMP connection before it is reaped.
		select {
		case <-vm.done:
		case <-time.After(drainTimeout):
		}
		select {
		case <-vm.done:
			return fmt.Errorf("%s: qemu exited at start (%s):\n%s", vm.name, vm.status(), vm.stderrText())
		default:
			return fmt.Errorf("%s: qemu did not answer QMP: %w\n%s", vm.name, err, vm.stderrText())
		}
	}
	return nil
}

// Expect waits until re matches a console line written after the line the
// previous successful Expect matched, and returns the submatches. It fails
// when timeout passes or QEMU exits first; the *ExpectError carries the
// console tail and matches ErrTimeout or ErrExited. A line without its
// newline yet (a shell prompt) is tried once output has paused briefly.
func (vm *VM) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	m, _, err := vm.ExpectAt(re, timeout)
	return m, err
}

// ExpectAt is Expect that also reports when the matched line arrived,
// measured from the moment QEMU was started: a boot-time measurement.
func (vm *VM) ExpectAt(re *regexp.Regexp, timeout time.Duration) ([]string, time.Duration, error) {
	m, at, exited, err := vm.con.expect(re, timeout)
	if err == nil {
		return m, at.Sub(vm.started), nil
	}
	e := &ExpectError{VM: vm.name, Pattern: re.String(), Timeout: timeout, Exited: exited}
	if exited {
		select {
		case <-vm.done:
		case <-time.After(drainTimeout):
		}
		e.Status = vm.status()
	}
	e.Tail = vm.Tail(TailLines)
	return nil, 0, e
}

// Send writes s to the serial console's input (the guest's ttyS0), as if
// typed: end a command with "\n".
func (vm *VM) Send(s string) error {
	vm.sendMu.Lock()
	defer vm.sendMu.Unlock()
	if _, err := io.WriteString(vm.stdin, s); err != nil {
		return fmt.Errorf("%s: write console input: %w", vm.name, err)
	}
	return nil
}

// Tail returns the last n lines of the console output.
func (vm *VM) Tail(n int) string { return vm.con.tail(n) }

// Console returns the console output kept so far (at most MaxConsole
// bytes, the newest).
func (vm *VM) Console() string { return string(vm.con.bytes()) }

// Wait waits up to timeout for QEMU to exit (the guest powered off, or
// rebooted under NoReboot) and returns its exit status. The error is nil
// only for status 0; a timeout matches ErrTimeout and carries the console
// tail. The status is -1 while QEMU runs or when a signal ended it.
func (vm *VM) Wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-vm.done:
	case <-t.C:
		return -1, fmt.Errorf("%s: qemu still running after %s: %w\n%s", vm.name, timeout, ErrTimeout, tailBlock(vm.Tail(TailLines)))
	}
	code := vm.state.ExitCode()
	if code != 0 {
		return code, fmt.Errorf("%s: qemu ended with %s after %s\nqemu stderr:\n%s\n%s",
			vm.name, vm.status(), vm.Elapsed().Round(time.Millisecond), vm.stderrText(), tailBlock(vm.Tail(TailLines)))
	}
	return 0, nil
}

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Close kills QEMU (its whole process group) as a power cut would, waits
// for it, and removes the temporary state directory. Data QEMU wrote to a
// persistent disk stays; what the guest had not flushed is lost. Close is
// idempotent.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		vm.kill()
		select {
		case <-vm.done:
		case <-time.After(10 * time.Second):
			vm.closeErr = fmt.Errorf("%s: qemu (pid %d) did not die after SIGKILL", vm.name, vm.cmd.Process.Pid)
			return
		}
		vm.sendMu.Lock()
		vm.stdin.Close()
		vm.sendMu.Unlock()
		if vm.logFile != nil {
			fmt.Fprintf(vm.logFile, "\n# qemu: %s\n# qemu stderr:\n%s\n", vm.status(), vm.stderrText())
			if err := vm.logFile.Close(); err != nil {
				vm.closeErr = fmt.Errorf("%s: console log: %w", vm.name, err)
			}
		}
		if vm.ownState {
			if err := os.RemoveAll(vm.stateDir); err != nil && vm.closeErr == nil {
				vm.closeErr = fmt.Errorf("%s: remove state directory: %w", vm.name, err)
			}
		}
		vm.log.Logf("%s: closed: qemu %s, ran %s", vm.name, vm.status(), vm.Elapsed().Round(time.Millisecond))
	})
	return vm.closeErr
}

// HostPort returns the host port forwarded to guestPort (the first such
// forward of any NIC), or 0 if there is none.
func (vm *VM) HostPort(guestPort int) int { return vm.ports[guestPort] }

// Elapsed returns the time since QEMU was started, or how long it ran once
// it has exited.
func (vm *VM) Elapsed() time.Duration {
	select {
	case <-vm.done:
		return vm.ended.Sub(vm.started)
	default:
		return time.Since(vm.started)
	}
}

// Argv returns the command line QEMU was started with.
func (vm *VM) Argv() []string { return append([]string(nil), vm.argv...) }

// LogPath returns the console log file, or "" when HARDVISOR_TEST_LOGS is
// not set.
func (vm *VM) LogPath() string {
	if vm.logFile == nil {
		return ""
	}
	return vm.logFile.Name()
}

// QMP runs a QMP command (https://qemu.org/docs/master/interop/qemu-qmp-ref.html)
// with args (nil or a value that marshals to a JSON object) and returns
// its "return" value.
func (vm *VM) QMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	ret, err := qmpCall(ctx, filepath.Join(vm.stateDir, qmpSocketName), command, args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vm.name, err)
	}
	return ret, nil
}

// HMP runs a human monitor command ("info network", "qemu-io disk0 ...")
// through QMP and returns its output.
func (vm *VM) HMP(ctx context.Context, cmdline string) (string, error) {
	ret, err := vm.QMP(ctx, "human-monitor-command", map[string]string{"command-line": cmdline})
	if err != nil {
		return "", err
	}
	var out string
	if err := json.Unmarshal(ret, &out); err != nil {
		return "", fmt.Errorf("%s: hmp %q: decode reply: %w", vm.name, cmdline, err)
	}
	return out, nil
}

func (vm *VM) kill() {
	if vm.cmd == nil || vm.cmd.Process == nil {
		return
	}
	select {
	case <-vm.done:
	default:
		killGroup(vm.cmd.Process)
	}
}

// status describes how QEMU ended, or says it is running.
func (vm *VM) status() string {
	select {
	case <-vm.done:
	default:
		return "running"
	}
	if vm.state == nil {
		return fmt.Sprintf("wait: %v", vm.waitEr)
	}
	return vm.state.String()
}

func (vm *VM) stderrText() string {
	s := strings.TrimSpace(string(vm.stderr.bytes()))
	if s == "" {
		return "(qemu stderr is empty)"
	}
	return s
}

func findQEMU(bin string) (string, error) {
	if bin == "" {
		bin = DefaultBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if bin == DefaultBinary {
			return "", fmt.Errorf("%s not found: apt-get install qemu-system-x86", DefaultBinary)
		}
		return "", fmt.Errorf("qemu binary: %w", err)
	}
	return path, nil
}

// checkInputs reports every input file of opts that is missing, naming the
// package that provides it where there is one.
func checkInputs(opts Options) error {
	var errs []error
	check := func(field, path, hint string) {
		if path == "" {
			return
		}
		if _, err := os.Stat(path); err != nil {
			if hint != "" && errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%s not found: %s", path, hint)
			}
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if fw := opts.Firmware; fw != nil {
		check("firmware.code", value(fw.Code, OVMFCode), "apt-get install ovmf")
		check("firmware.vars", value(fw.Vars, OVMFVars), "apt-get install ovmf")
	}
	check("kernel", opts.Kernel, "")
	check("initrd", opts.Initrd, "")
	for i, d := range opts.Disks {
		check(fmt.Sprintf("disks[%d].path", i), d.Path, "")
	}
	for i, n := range opts.NICs {
		check(fmt.Sprintf("nics[%d].tftp", i), n.TFTP, "")
	}
	return errors.Join(errs...)
}

// copyIfMissing copies src to dst unless dst exists.
func copyIfMissing(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return err
	}
	return nil
}

// createLog creates dir/name.log, or name.2.log and so on when a VM of the
// same name already wrote one.
func createLog(dir, name string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i := 1; ; i++ {
		file := name + ".log"
		if i > 1 {
			file = fmt.Sprintf("%s.%d.log", name, i)
		}
		f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sanitize makes a test name usable as a file name and as QEMU's -name.
func sanitize(name string) string { return strings.Trim(unsafeName.ReplaceAllString(name, "_"), "_.") }

type discard struct{}

func (discard) Logf(string, ...any) {}
