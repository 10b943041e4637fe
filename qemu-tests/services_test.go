package qemutests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/services/status"
)

// servicesConfig is a debug host with services that misbehave on purpose,
// each with real programs from the build host (dash) and the image (sleep):
// db and app (app requires db) are required and well behaved; crashy kills
// itself with SIGSEGV on every start; hog doubles a string until it passes
// memory.max; bomb is a fork bomb under pids.max.
const servicesConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-services
profile: debug
host: {hostname: svc-test, readyTimeout: 90s}
services:
  - name: db
    command: [/bin/sh, -c, "echo db up; : > /run/db.ready; exec /bbin/sleep 100000"]
    ready: {file: /run/db.ready, interval: 200ms}
    limits: {memoryMin: 16Mi, memoryMax: 64Mi, cpuWeight: 200, pids: 16}
  - name: app
    command: [/bin/sh, -c, "echo app up; exec /bbin/sleep 100000"]
    requires: [db]
    stopTimeout: 5s
  - name: crashy
    command: [/bin/sh, -c, "echo crashing; kill -SEGV $$"]
    optional: true
    backoff: {initial: 500ms, max: 8s}
    breaker: {restarts: 4, window: 2m}
  - name: hog
    command: [/bin/sh, -c, "x=0123456789abcdef; while :; do x=$x$x; done"]
    optional: true
    restart: never
    limits: {memoryMax: 32Mi}
  - name: bomb
    command: [/bin/sh, -c, "exec 2>/dev/null; f() { f | f & }; f; exec /bbin/sleep 100000"]
    optional: true
    restart: never
    limits: {pids: 32}
`

// notReadyConfig has a required service whose readiness file never appears.
const notReadyConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-notready
host: {hostname: notready, readyTimeout: 15s}
services:
  - name: steady
    command: [/bin/sleep, "100000"]
  - name: stuck
    command: [/bin/sh, -c, "echo waiting for godot; echo still waiting; exec /bin/sleep 100000"]
    ready: {file: /run/godot}
`

// buildConfig builds an image from a config the test writes (and files
// beside it, by name), with the
// shared cache so PID 1 is not compiled again.
func buildConfig(t *testing.T, name, yaml string, files ...map[string][]byte) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, fs := range files {
		for n, b := range fs {
			if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	if _, err := build.Run(build.Options{ConfigPath: cfg, OutDir: out, SourceDir: sourceDir(t), Cache: c, Epoch: epoch(t)}); err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	t.Logf("built %s in %.1fs", name, time.Since(start).Seconds())
	return out
}

// shell runs a command in the debug shell and gives its output, the lines
// between two markers the typed text cannot contain.
type shell struct {
	t  *testing.T
	vm *qemu.VM
	n  int
}

func (sh *shell) run(cmd string) string {
	sh.t.Helper()
	sh.n++
	tag := "hv" + strconv.Itoa(sh.n)
	// $((…)) makes the markers differ from the echoed command line.
	line := "echo " + tag + "-$((1+1))-begin; " + cmd + "; echo " + tag + "-$((2+2))-end\n"
	if err := sh.vm.Send(line); err != nil {
		sh.t.Fatal(err)
	}
	expect(sh.t, sh.vm, regexp.MustCompile(`^`+tag+`-4-end\r?$`), bootTimeout)
	con := strings.ReplaceAll(sh.vm.Console(), "\r", "")
	// The prompt may precede the first marker on its line.
	open, shut := tag+"-2-begin\n", "\n"+tag+"-4-end"
	begin, end := strings.LastIndex(con, open), strings.LastIndex(con, shut)
	if begin < 0 || end < begin {
		sh.t.Fatalf("shell: no output between the markers of %q:\n%s", cmd, sh.vm.Tail(20))
	}
	return con[begin+len(open) : end+1]
}

// TestServices boots a host whose services misbehave and checks that the
// service manager contains each one and the host stays ready: the required
// services are up in dependency order with the cgroup limits of the config;
// a service killed by a signal is restarted with growing delays until the
// crash-loop breaker marks it failed; a service that allocates past its
// memory.max is OOM-killed inside its own cgroup; a fork bomb stops at its
// pids.max; the status report tells all of it; and a poweroff stops the
// services in reverse dependency order before the disks are synced.
func TestServices(t *testing.T) {
	dir := buildConfig(t, "services", servicesConfig)
	vm := directBoot(t, dir, nil)
	ready := expect(t, vm, readyLine("0.1.0-services"), bootTimeout)
	if !strings.Contains(ready[0], "services=5") {
		t.Errorf("ready line %q: want services=5", ready[0])
	}
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	con := vm.Console()
	if i, j := strings.Index(con, "service db: Ready"), strings.Index(con, "service app: Running"); i < 0 || j < 0 || j < i {
		t.Errorf("app must start after db is ready:\n%s", vm.Tail(60))
	}
	if !strings.Contains(con, "hardvisor: machine/ closed: machine memory: host") {
		t.Errorf("a 512 MiB machine with a 1Gi reserve must close machine/:\n%s", vm.Tail(60))
	}

	// The crash loop: 4 restarts with doubling delays, then the breaker.
	expect(t, vm, regexp.MustCompile(`hardvisor: service crashy: Failed after killed by signal 11 [^:]*: crash loop: 4 restarts within 2m0s`), 2*bootTimeout)
	checkBackoff(t, vm.Console(), []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second})

	sh := &shell{t: t, vm: vm}
	cg := "/sys/fs/cgroup/hardvisor.slice/"
	for file, want := range map[string]string{
		"db/memory.min": "16777216", "db/memory.max": "67108864", "db/cpu.weight": "200", "db/pids.max": "16",
		"app/memory.max": "536870912", "app/pids.max": "1024", "bomb/pids.max": "32", "hog/memory.max": "33554432",
		"../machine/memory.max": "0",
	} {
		if got := strings.TrimSpace(sh.run("cat " + cg + file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	before := report(t, sh)

	// The hog: OOM-killed in its own group, nothing else.
	if ev := sh.run("cat " + cg + "hog/memory.events"); !regexp.MustCompile(`(?m)^oom_kill [1-9]`).MatchString(ev) {
		t.Errorf("hog/memory.events shows no OOM kill:\n%s", ev)
	}
	if s := service(t, before, "hog"); s.State != "Exited" || !strings.Contains(s.LastExit, "signal 9") {
		t.Errorf("hog: %+v, want Exited after SIGKILL", s)
	}
	// The bomb: held at pids.max, its forks refused.
	if ev := sh.run("cat " + cg + "bomb/pids.events"); !regexp.MustCompile(`(?m)^max [1-9]`).MatchString(ev) {
		t.Errorf("bomb/pids.events shows no refused fork:\n%s", ev)
	}
	if cur, _ := strconv.Atoi(strings.TrimSpace(sh.run("cat " + cg + "bomb/pids.current"))); cur < 1 || cur > 32 {
		t.Errorf("bomb/pids.current = %d, want 1..32", cur)
	}
	sh.run("echo 1 > " + cg + "bomb/cgroup.kill")
	// PID 1's line shares the console with the shell: wait for it.
	expect(t, vm, regexp.MustCompile(`hardvisor: service bomb: Exited after killed by signal 9`), shutdownTimeout)

	after := report(t, sh)
	if !after.Gate.Decided || !after.Gate.Ready {
		t.Errorf("gate = %+v, want ready", after.Gate)
	}
	for _, name := range []string{"db", "app"} {
		b, a := service(t, before, name), service(t, after, name)
		if a.State != "Ready" || a.Restarts != 0 || a.Pid != b.Pid {
			t.Errorf("%s was disturbed: before %+v, after %+v", name, b, a)
		}
	}
	if s := service(t, after, "crashy"); s.State != "Failed" || s.Restarts != 4 {
		t.Errorf("crashy: %+v, want Failed after 4 restarts", s)
	}
	// db is one process of a Go program (u-root's sleep): a few threads.
	if s := service(t, after, "db"); s.Memory == 0 || s.PIDs < 1 || s.PIDs > 16 || s.CPU <= 0 {
		t.Errorf("db usage: memory %d, tasks %d, cpu %s: want the cgroup's usage", s.Memory, s.PIDs, s.CPU)
	}
	text := sh.run("/bbin/hvstatus")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`gate: ready`),
		// SERVICE STATE PID USER RESTARTS LAST-EXIT …; db runs as root.
		regexp.MustCompile(`(?m)^crashy\s+Failed\s+-\s+-\s+4\s+killed by signal 11`),
		regexp.MustCompile(`(?m)^db\s+Ready\s+\d+\s+0\s+0\s`),
		regexp.MustCompile(`hardening: \d+ passed, 0 failed`),
	} {
		if !want.MatchString(text) {
			t.Errorf("hvstatus output does not match %v:\n%s", want, text)
		}
	}

	powerDown(t, vm)
	con = vm.Console()
	order := []string{"service app: Stopped", "service db: Stopping", "service db: Stopped", "hardvisor: poweroff: syncing disks"}
	last := strings.Index(con, "hardvisor: poweroff: stopping services")
	for _, s := range order {
		i := strings.Index(con[max(last, 0):], s)
		if last < 0 || i < 0 {
			t.Fatalf("poweroff: %q missing or out of order (want %q):\n%s", s, order, vm.Tail(40))
		}
		last += i
	}
}

// checkBackoff finds crashy's restarts on the console: each planned delay
// is the next of want, and the time PID 1 logged between the end of a run
// and the next start is at least that delay.
func checkBackoff(t *testing.T, con string, want []time.Duration) {
	t.Helper()
	re := regexp.MustCompile(`service crashy: (Backoff|Running)(?: after [^;]*; restart (\d+) in ([0-9.]+m?s))?.*\(t=([0-9.]+)s\)`)
	var planned []time.Duration
	var endedAt float64
	for _, m := range re.FindAllStringSubmatch(con, -1) {
		at, _ := strconv.ParseFloat(m[4], 64)
		switch m[1] {
		case "Backoff":
			d, err := time.ParseDuration(m[3])
			if err != nil {
				t.Fatalf("delay %q: %v", m[3], err)
			}
			planned = append(planned, d)
			endedAt = at
		case "Running":
			if n := len(planned); n > 0 {
				if gap := time.Duration((at - endedAt) * float64(time.Second)); gap < planned[n-1] {
					t.Errorf("restart %d came %s after the exit, before its delay %s", n, gap, planned[n-1])
				}
			}
		}
	}
	if len(planned) != len(want) {
		t.Fatalf("crashy restarted with delays %v, want %v", planned, want)
	}
	for i := range want {
		if planned[i] != want[i] {
			t.Errorf("restart %d: delay %s, want %s (all: %v)", i+1, planned[i], want[i], planned)
		}
	}
}

func report(t *testing.T, sh *shell) *status.Report {
	t.Helper()
	out := sh.run("/bbin/hvstatus -json")
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("hvstatus -json: %v\n%s", err, out)
	}
	return &r
}

func service(t *testing.T, r *status.Report, name string) status.Service {
	t.Helper()
	for _, s := range r.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("status report has no service %q", name)
	return status.Service{}
}

// TestNotReady boots a production host with a required service that never
// becomes ready: after host.readyTimeout the gate reports the host not
// ready, naming the service, its state and its last log lines, and never
// prints the ready line; the host still powers off cleanly.
func TestNotReady(t *testing.T) {
	dir := buildConfig(t, "notready", notReadyConfig)
	vm := directBoot(t, dir, nil)
	m := expect(t, vm, regexp.MustCompile(`hardvisor: not ready version=0\.1\.0-notready: (\d+) failing`), 2*bootTimeout)
	if m[1] != "1" {
		t.Errorf("%s: want exactly the stuck service failing", m[0])
	}
	expect(t, vm, regexp.MustCompile(`^hardvisor:   stuck: Running \(not ready: .*/run/godot.*\)`), shutdownTimeout)
	expect(t, vm, regexp.MustCompile(`^\s+waiting for godot\r?$`), shutdownTimeout)
	expect(t, vm, regexp.MustCompile(`^\s+still waiting\r?$`), shutdownTimeout)
	if strings.Contains(vm.Console(), "hardvisor: ready") {
		t.Errorf("a host that failed its gate printed the ready line:\n%s", vm.Tail(30))
	}
	powerDown(t, vm)
}
