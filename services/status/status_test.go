package status

import (
	"context"
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
		{Name: "db", State: "Ready", Pid: 120, Required: true, Memory: 3 << 20, PIDs: 1, CPU: 1500 * time.Millisecond},
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

// TestServeFetch serves a report on a real unix socket and reads it back.
func TestServeFetch(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "status.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go Serve(l, func() Report { return sample })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := Fetch(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, sample) {
		t.Errorf("Fetch =\n%+v\nwant\n%+v", *got, sample)
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
SERVICE  STATE   PID  RESTARTS  LAST EXIT                      MEMORY  TASKS  CPU   REASON
db       Ready   120  0         -                              3.0MiB  1      1.5s  
crashy   Failed  -    4         killed by signal 11 (SIGSEGV)  0.0MiB  0      0s    crash loop: 4 restarts within 2m0s
hardening: 1 passed, 1 failed, 1 not in this kernel
  FAIL kernel.sysrq: want 0, reads 1
`
	if b.String() != want {
		t.Errorf("WriteText =\n%s\nwant\n%s", b.String(), want)
	}
}
