package status

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var sample = Report{
	Version: "1.2.3", Hostname: "hv01", Profile: "debug", Boots: 4,
	Gate: Gate{Decided: true, Ready: false, At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		Failing: []string{"stuck: Running (not ready: no /run/godot)\n    waiting for godot", "hardening: kernel.sysrq: want 0, reads 1"}},
	Services: []Service{
		{Name: "db", State: "Ready", Pid: 120, UID: new(900), CapEff: "0000000000000000", Required: true, Memory: 3 << 20, PIDs: 1, CPU: 1500 * time.Millisecond},
		{Name: "crashy", State: "Failed", Restarts: 4, LastExit: "killed by signal 11 (SIGSEGV)", Reason: "crash loop: 4 restarts within 2m0s"},
	},
	Hardening: []Check{
		{Name: "kernel.kptr_restrict", Want: "2", Got: "2", OK: true},
		{Name: "kernel.sysrq", Want: "0", Got: "1"},
		{Name: "kernel.io_uring_disabled", Want: "2", NotApplicable: true},
	},
	Machine: "machine memory: host 512Mi minus reserve 1Gi leaves nothing for guests",
	InitRSS: 9 << 20,
}

// fakeHost records what the control socket asked for.
type fakeHost struct {
	restarted []string
	power     []string
}

func (f *fakeHost) Report() Report { return sample }
func (f *fakeHost) Logs(name string, n int) ([]string, error) {
	if name != "db" {
		return nil, fmt.Errorf("logs %q: %w", name, ErrUnknownService)
	}
	return []string{"one", "two", "three"}[3-min(n, 3):], nil
}
func (f *fakeHost) Restart(name string) error {
	if name != "db" {
		return fmt.Errorf("restart %q: %w", name, ErrUnknownService)
	}
	f.restarted = append(f.restarted, name)
	return nil
}
func (f *fakeHost) Power(action string) error {
	if action != PowerReboot && action != PowerPoweroff {
		return fmt.Errorf("power: unknown action %q", action)
	}
	f.power = append(f.power, action)
	return nil
}

// TestControlSocket serves a fake host on a real unix socket and uses every
// call of the client, good and bad.
func TestControlSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := &fakeHost{}
	go Serve(l, h)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &Client{Socket: sock}
	got, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, sample) {
		t.Errorf("Status =\n%+v\nwant\n%+v", *got, sample)
	}
	if lines, err := c.Logs(ctx, "db", 2); err != nil || !reflect.DeepEqual(lines, []string{"two", "three"}) {
		t.Errorf("Logs = %q, %v", lines, err)
	}
	if err := c.Restart(ctx, "db"); err != nil || !reflect.DeepEqual(h.restarted, []string{"db"}) {
		t.Errorf("Restart: %v, restarted %v", err, h.restarted)
	}
	if err := c.Restart(ctx, "nope"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("Restart of an unknown service = %v", err)
	}
	if _, err := c.Logs(ctx, "nope", 1); !errors.Is(err, ErrUnknownService) {
		t.Errorf("Logs of an unknown service = %v", err)
	}
	if err := c.Power(ctx, PowerReboot); err != nil || !reflect.DeepEqual(h.power, []string{"reboot"}) {
		t.Errorf("Power: %v, %v", err, h.power)
	}
	if err := c.Power(ctx, "explode"); err == nil || err.Error() != `PID 1: 400 Bad Request: power: unknown action "explode"` {
		t.Errorf("Power(explode) = %v", err)
	}
	if err := c.do(ctx, "DELETE", Path, nil, nil); err == nil || !strings.Contains(err.Error(), "405") {
		t.Errorf("DELETE = %v, want 405", err)
	}
	if _, err := Fetch(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("Fetch of a missing socket = %v, want an error naming it", err)
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := sample.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `hardvisor 1.2.3 on hv01 (debug), boot 4, init rss 9.0MiB
gate: not ready
  stuck: Running (not ready: no /run/godot)
      waiting for godot
  hardening: kernel.sysrq: want 0, reads 1
machine: machine memory: host 512Mi minus reserve 1Gi leaves nothing for guests
SERVICE  STATE   PID  USER  RESTARTS  LAST EXIT                      MEMORY  TASKS  CPU   REASON
db       Ready   120  900   0         -                              3.0MiB  1      1.5s  
crashy   Failed  -    -     4         killed by signal 11 (SIGSEGV)  0.0MiB  0      0s    crash loop: 4 restarts within 2m0s
hardening: 1 passed, 1 failed, 1 not in this kernel
  FAIL kernel.sysrq: want 0, reads 1
`
	if b.String() != want {
		t.Errorf("WriteText =\n%s\nwant\n%s", b.String(), want)
	}
}
