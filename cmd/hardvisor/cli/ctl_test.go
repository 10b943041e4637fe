package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/api"
	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
	"hardvisor.dev/hardvisor/services/vmm"
)

var ctlSample = status.Report{
	Version: "1.2.3", Hostname: "hv01", Profile: "production", Boots: 2, InitRSS: 9 << 20,
	Gate: status.Gate{Decided: true, Ready: true, At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
	Services: []status.Service{
		{Name: "libvirtd", State: "Ready", Pid: 310, Required: true, Memory: 12 << 20, PIDs: 4},
		{Name: "mgmtd", State: "Ready", Pid: 320, UID: new(900), Restarts: 1, LastExit: "exit status 1", Memory: 8 << 20, PIDs: 6},
		{Name: "updated", State: "Waiting", Reason: "waiting for HV-DATA"},
	},
	Hardening: []status.Check{
		{Name: "kernel.kptr_restrict", Want: "2", Got: "2", OK: true},
		{Name: "kernel.sysrq", Want: "0", Got: "1"},
	},
	Network: &status.Network{Namespace: "/run/netns/mgmt", NamespaceLinks: []string{"lo", "eth0"}, MgmtNIC: "eth0",
		Address: "192.0.2.10/24", Gateway: "192.0.2.1", DHCP: true, Bridges: []string{"hvbr0: eth1 prod/100"}, Down: []string{"eth2"}},
}

// ctlFakeHost records what the API asked of it.
type ctlFakeHost struct {
	mu    sync.Mutex
	calls []string
}

func (f *ctlFakeHost) call(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *ctlFakeHost) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *ctlFakeHost) Status(context.Context) (*status.Report, error) {
	f.call("status")
	r := ctlSample
	return &r, nil
}

func (f *ctlFakeHost) Logs(_ context.Context, name string, n int) ([]string, error) {
	f.call("logs %s %d", name, n)
	if name != "libvirtd" {
		return nil, fmt.Errorf("logs %q: %w", name, api.ErrUnknownService)
	}
	lines := []string{"one", "two", "three"}
	return lines[len(lines)-min(n, len(lines)):], nil
}

func (f *ctlFakeHost) Restart(_ context.Context, name string) error {
	f.call("restart %s", name)
	return nil
}

func (f *ctlFakeHost) Power(_ context.Context, action string) error {
	f.call("power %s", action)
	return nil
}

var (
	ctlWeb1 = vmm.Status{Name: "web1", State: "running", Reason: "booted", Autostart: true, ID: 3, PID: 4242,
		Label: "system_u:system_r:svirt_t:s0:c12,c345", Tap: "vnet0", Bridge: "hvbr0", VID: 100,
		Cgroup:   "/sys/fs/cgroup/machine/web1",
		Ceilings: &vmm.Ceilings{CPUMax: "200000 100000", CPUWeight: "100", MemoryMax: "4563402752", PIDsMax: "512"},
		Want:     vmm.Ceilings{CPUMax: "200000 100000", CPUWeight: "100", MemoryMax: "4563402752", PIDsMax: "512"},
		Since:    time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	ctlDB1 = vmm.Status{Name: "db1", State: "shutoff", Reason: "crashed", Failed: true, Tap: "vnet1", Bridge: "hvbr0",
		Want:     vmm.Ceilings{CPUMax: "50000 100000", CPUWeight: "100", MemoryMax: "max", PIDsMax: "max"},
		Restarts: 3, Error: "crashed 4 times in 10m0s"}
)

// ctlFakeGuests is the vmm.Host behind a real vmm.Handler: web1 and db1,
// db1 failing to start.
type ctlFakeGuests struct{ ctlFakeHost }

func (f *ctlFakeGuests) List() []vmm.Status { return []vmm.Status{ctlWeb1, ctlDB1} }

func (f *ctlFakeGuests) Get(name string) (vmm.Status, error) {
	switch name {
	case "web1":
		return ctlWeb1, nil
	case "db1":
		return ctlDB1, nil
	}
	return vmm.Status{}, fmt.Errorf("%w %q", vmm.ErrUnknownGuest, name)
}

func (f *ctlFakeGuests) act(verb, name string) error {
	f.call("%s %s", verb, name)
	if name == "db1" {
		return fmt.Errorf("%s %s: libvirt: internal error: no disk", verb, name)
	}
	return nil
}

func (f *ctlFakeGuests) Start(_ context.Context, name string) error   { return f.act("start", name) }
func (f *ctlFakeGuests) Stop(_ context.Context, name string) error    { return f.act("stop", name) }
func (f *ctlFakeGuests) Restart(_ context.Context, name string) error { return f.act("restart", name) }

func (f *ctlFakeGuests) Console(name string) ([]byte, error) {
	if _, err := f.Get(name); err != nil {
		return nil, err
	}
	return []byte("\x1b[0;32m  OK  \x1b[0m Reached target multi-user.\r\n\x1b]0;owned\x07login: "), nil
}

// ctlEnv is a management API on 127.0.0.1 and the flags each role's client
// passes to ctl.
type ctlEnv struct {
	host   *ctlFakeHost
	guests *ctlFakeGuests // nil on a host without guests
	log    *audit.Log
	flags  map[pki.Role][]string
}

// startCtl starts the API on a host with guests, served by vmm's handler
// on a unix socket.
func startCtl(t *testing.T) *ctlEnv {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "hv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "vmm.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	guests := &ctlFakeGuests{}
	vmmd := httptest.NewUnstartedServer(vmm.Handler(guests))
	vmmd.Listener.Close()
	vmmd.Listener = l
	vmmd.Start()
	t.Cleanup(vmmd.Close)
	e := startCtlWith(t, &vmm.Client{Socket: sock})
	e.guests = guests
	return e
}

// startCtlWith starts the API with guests (nil: the host runs none).
func startCtlWith(t *testing.T, guests api.Guests) *ctlEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer("127.0.0.1", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := pki.ServerTLSConfig(certPEM, keyPEM, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(filepath.Join(dir, "audit.log"), audit.Options{
		Now: func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	e := &ctlEnv{host: &ctlFakeHost{}, log: log, flags: map[pki.Role][]string{}}
	// A clock that leaps past the status cache's limit at every look, so
	// each read asks the host, as the calls below expect.
	var clock atomic.Int64
	leap := func() time.Time {
		return time.Unix(0, 0).Add(time.Duration(clock.Add(1)) * (api.StatusStaleLimit + time.Second))
	}
	srv := httptest.NewUnstartedServer(api.New(api.Options{Host: e.host, Guests: guests, Audit: log, Now: leap}))
	srv.TLS = tlsCfg
	// TestCtlWrongCA's failed handshake is expected, not news.
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPath := filepath.Join(dir, "ca", pki.CertFile)
	for _, role := range pki.Roles {
		certPEM, keyPEM, err := ca.IssueClient(string(role)+" user", role, 0)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, string(role)+".pem"), filepath.Join(dir, string(role)+"-key.pem")
		if err := pki.WriteFiles(cert, key, certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		e.flags[role] = []string{"--endpoint", srv.URL, "--cert", cert, "--key", key, "--ca", caPath}
	}
	return e
}

func (e *ctlEnv) run(role pki.Role, args ...string) (string, error) {
	var o, errOut bytes.Buffer
	err := runCtl(context.Background(), append(append([]string{}, e.flags[role]...), args...), &o, &errOut)
	return o.String(), err
}

func TestCtl(t *testing.T) {
	e := startCtl(t)
	var statusText bytes.Buffer
	if err := ctlSample.WriteText(&statusText); err != nil {
		t.Fatal(err)
	}
	servicesJSON, err := json.Marshal(ctlSample.Services)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role      pki.Role
		args      []string
		want      string
		wantErr   string
		wantCalls []string
	}{
		{role: pki.RoleViewer, args: []string{"services"}, wantCalls: []string{"status"}, want: "" +
			"NAME      STATE    PID  USER  RESTARTS  LAST-EXIT      MEMORY   TASKS\n" +
			"libvirtd  Ready    310  -     0         -              12.0MiB  4\n" +
			"mgmtd     Ready    320  900   1         exit status 1  8.0MiB   6\n" +
			"updated   Waiting  -    -     0         -              0.0MiB   0\n"},
		{role: pki.RoleViewer, args: []string{"services", "--json"}, wantCalls: []string{"status"}, want: string(servicesJSON) + "\n"},
		{role: pki.RoleViewer, args: []string{"status"}, wantCalls: []string{"status"}, want: statusText.String()},
		{role: pki.RoleViewer, args: []string{"network"}, wantCalls: []string{"status"}, want: "" +
			"namespace:  /run/netns/mgmt [lo eth0]\n" +
			"nic:        eth0\n" +
			"address:    192.0.2.10/24 (dhcp)\n" +
			"gateway:    192.0.2.1\n" +
			"bridge:     hvbr0: eth1 prod/100\n" +
			"down:       eth2\n"},
		{role: pki.RoleViewer, args: []string{"logs", "libvirtd", "--lines", "2"}, wantCalls: []string{"logs libvirtd 2"},
			want: "two\nthree\n"},
		{role: pki.RoleViewer, args: []string{"logs", "libvirtd"}, wantCalls: []string{"logs libvirtd 100"},
			want: "one\ntwo\nthree\n"},
		{role: pki.RoleViewer, args: []string{"logs", "nosuch"}, wantCalls: []string{"logs nosuch 100"},
			wantErr: `ctl: 404 Not Found: unknown service "nosuch"`},
		{role: pki.RoleViewer, args: []string{"logs", "libvirtd", "--lines", "0"},
			wantErr: `ctl: 400 Bad Request: lines="0": want a number from 1 to 10000`},
		{role: pki.RoleViewer, args: []string{"restart", "libvirtd"},
			wantErr: `ctl: 403 Forbidden: services.restart needs role operator: "viewer user" has role viewer`},
		{role: pki.RoleOperator, args: []string{"restart", "libvirtd"}, wantCalls: []string{"restart libvirtd"},
			want: "restart libvirtd: accepted\n"},
		{role: pki.RoleOperator, args: []string{"reboot"},
			wantErr: `ctl: 403 Forbidden: power needs role admin: "operator user" has role operator`},
		{role: pki.RoleAdmin, args: []string{"poweroff"}, wantCalls: []string{"power poweroff"}, want: "poweroff: accepted\n"},
		{role: pki.RoleAdmin, args: []string{"--json", "reboot"}, wantCalls: []string{"power reboot"},
			want: `{"action":"reboot","accepted":true}` + "\n"},
	} {
		e.host.mu.Lock()
		e.host.calls = nil
		e.host.mu.Unlock()
		out, err := e.run(tc.role, tc.args...)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ctl %q as %s: %v", tc.args, tc.role, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("ctl %q as %s: err = %v, want %s", tc.args, tc.role, err, tc.wantErr)
		case tc.wantErr != "" && ExitCode(err) != 1:
			t.Errorf("ctl %q as %s: exit code %d, want 1", tc.args, tc.role, ExitCode(err))
		}
		if out != tc.want {
			t.Errorf("ctl %q as %s: stdout\n%s\nwant\n%s", tc.args, tc.role, out, tc.want)
		}
		if got := e.host.Calls(); !reflect.DeepEqual(got, tc.wantCalls) {
			t.Errorf("ctl %q as %s: host calls %q, want %q", tc.args, tc.role, got, tc.wantCalls)
		}
	}
}

func TestCtlAudit(t *testing.T) {
	e := startCtl(t)
	if _, err := e.run(pki.RoleViewer, "restart", "mgmtd"); err == nil {
		t.Fatal("restart as viewer succeeded")
	}
	if _, err := e.run(pki.RoleOperator, "restart", "mgmtd"); err != nil {
		t.Fatal(err)
	}
	recs, err := e.log.Records(0, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit log: %d records, %v; want the denial and the restart", len(recs), err)
	}
	out, err := e.run(pki.RoleOperator, "audit", "--after", "1", "--limit", "5")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		"SEQ TIME ACTOR ROLE REMOTE ACTION TARGET ALLOWED STATUS DETAIL",
		"2 2026-12-01T12:00:00Z operator user operator " + recs[1].Remote + " services.restart mgmtd yes 202",
		"head: seq 2, hash " + recs[1].Hash,
	}
	if len(lines) != len(want) {
		t.Fatalf("ctl audit:\n%s\nwant %d lines", out, len(want))
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[i] {
			t.Errorf("ctl audit line %d = %q, want %q", i+1, got, want[i])
		}
	}
}

func TestCtlUsage(t *testing.T) {
	e := startCtl(t)
	flags := e.flags[pki.RoleAdmin]
	for _, tc := range []struct {
		args []string
		want string // the error's first line
	}{
		{flags, "ctl: no command given"},
		{append(flags, "frobnicate"), `ctl: unknown command "frobnicate"`},
		{append(flags, "restart"), "usage: hardvisor ctl [flags] restart NAME"},
		{append(flags, "logs", "a", "b"), "usage: hardvisor ctl [flags] logs NAME"},
		{append(flags, "status", "extra"), `ctl: status: unexpected argument "extra"`},
		{append(flags, "status", "--lines", "5"), "ctl: --lines is for logs, not status"},
		{append(flags, "logs", "x", "--limit", "5"), "ctl: --limit is for audit, not logs"},
		{[]string{"status"}, "ctl: --endpoint, --cert, --key, --ca required"},
		{append(flags[2:], "status"), "ctl: --endpoint required"},
		{append(flags, "--endpoint", "http://127.0.0.1:8443", "status"), `ctl: --endpoint "http://127.0.0.1:8443": want https://HOST[:PORT]`},
		{append(flags, "--endpoint", "https://127.0.0.1:8443/v1", "status"), `ctl: --endpoint "https://127.0.0.1:8443/v1": want https://HOST[:PORT]`},
		{append(flags, "--no-such-flag", "status"), "flag provided but not defined: -no-such-flag"},
		{append(flags, "guest"), "usage: hardvisor ctl [flags] guest NAME [start|stop|restart|console]"},
		{append(flags, "guest", ""), "usage: hardvisor ctl [flags] guest NAME [start|stop|restart|console]"},
		{append(flags, "guest", "web1", "start", "now"), "usage: hardvisor ctl [flags] guest NAME [start|stop|restart|console]"},
		{append(flags, "guest", "web1", "pause"), `ctl: guest web1: unknown action "pause"`},
		{append(flags, "guests", "web1"), `ctl: guests: unexpected argument "web1"`},
		{append(flags, "guest", "web1", "--lines", "5"), "ctl: --lines is for logs, not guest"},
	} {
		var o, errOut bytes.Buffer
		err := runCtl(context.Background(), tc.args, &o, &errOut)
		if err == nil || ExitCode(err) != 2 || strings.SplitN(err.Error(), "\n", 2)[0] != tc.want {
			t.Errorf("ctl %q: err = %v (exit %d), want a usage error %q", tc.args, err, ExitCode(err), tc.want)
		}
		if o.Len() != 0 {
			t.Errorf("ctl %q: stdout %q, want nothing", tc.args, o.String())
		}
	}
	if calls := e.host.Calls(); len(calls) != 0 {
		t.Errorf("host calls %q, want none", calls)
	}
	if calls := e.guests.Calls(); len(calls) != 0 {
		t.Errorf("vmm calls %q, want none", calls)
	}
}

func TestCtlGuests(t *testing.T) {
	e := startCtl(t)
	listJSON, err := json.Marshal(vmm.ListReply{Guests: []vmm.Status{ctlWeb1, ctlDB1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role      pki.Role
		args      []string
		want      string
		wantErr   string
		wantCalls []string
	}{
		{role: pki.RoleViewer, args: []string{"guests"}, want: "" +
			"NAME  STATE                      PID   LABEL                                  CPU   MEMORY  RESTARTS  ERROR\n" +
			"web1  running (booted)           4242  system_u:system_r:svirt_t:s0:c12,c345  200%  4352Mi  0         -\n" +
			"db1   shutoff (crashed), failed  -     -                                      50%   max     3         crashed 4 times in 10m0s\n"},
		{role: pki.RoleViewer, args: []string{"--json", "guests"}, want: string(listJSON) + "\n"},
		{role: pki.RoleViewer, args: []string{"guest", "web1"}, want: "" +
			"name:       web1\n" +
			"state:      running (booted)\n" +
			"since:      2026-12-01T10:00:00Z\n" +
			"autostart:  yes\n" +
			"pid:        4242 (domain 3)\n" +
			"label:      system_u:system_r:svirt_t:s0:c12,c345\n" +
			"nic:        vnet0 on hvbr0, vlan 100\n" +
			"cgroup:     /sys/fs/cgroup/machine/web1\n" +
			"restarts:   0\n" +
			"error:      -\n" +
			"\n" +
			"CEILING     WANT           NOW\n" +
			"cpu.max     200000 100000  200000 100000\n" +
			"cpu.weight  100            100\n" +
			"memory.max  4563402752     4563402752\n" +
			"io.max      -              -\n" +
			"pids.max    512            512\n"},
		{role: pki.RoleViewer, args: []string{"guest", "db1"}, want: "" +
			"name:       db1\n" +
			"state:      shutoff (crashed), failed\n" +
			"since:      -\n" +
			"autostart:  no\n" +
			"pid:        -\n" +
			"label:      -\n" +
			"nic:        vnet1 on hvbr0\n" +
			"cgroup:     -\n" +
			"restarts:   3\n" +
			"error:      crashed 4 times in 10m0s\n" +
			"\n" +
			"CEILING     WANT          NOW\n" +
			"cpu.max     50000 100000  -\n" +
			"cpu.weight  100           -\n" +
			"memory.max  max           -\n" +
			"io.max      -             -\n" +
			"pids.max    max           -\n"},
		{role: pki.RoleViewer, args: []string{"guest", "nosuch"}, wantErr: `ctl: 404 Not Found: unknown guest "nosuch"`},
		{role: pki.RoleViewer, args: []string{"guest", "web1", "console"},
			want: "  OK   Reached target multi-user.\n\\x1b]0;owned\\x07login: \n"},
		{role: pki.RoleViewer, args: []string{"--json", "guest", "web1", "console"},
			want: `{"guest":"web1","console":"\u001b[0;32m  OK  \u001b[0m Reached target multi-user.\r\n\u001b]0;owned\u0007login: "}` + "\n"},
		{role: pki.RoleViewer, args: []string{"guest", "web1", "start"},
			wantErr: `ctl: 403 Forbidden: guests.start needs role operator: "viewer user" has role viewer`},
		{role: pki.RoleOperator, args: []string{"guest", "web1", "start"}, wantCalls: []string{"start web1"},
			want: "start web1: running (booted)\n"},
		{role: pki.RoleOperator, args: []string{"guest", "web1", "stop"}, wantCalls: []string{"stop web1"},
			want: "stop web1: running (booted)\n"},
		{role: pki.RoleAdmin, args: []string{"guest", "web1", "restart"}, wantCalls: []string{"restart web1"},
			want: "restart web1: running (booted)\n"},
		{role: pki.RoleOperator, args: []string{"guest", "db1", "start"}, wantCalls: []string{"start db1"},
			wantErr: "ctl: 502 Bad Gateway: vmm: 500 Internal Server Error: start db1: libvirt: internal error: no disk"},
		{role: pki.RoleOperator, args: []string{"guest", "nosuch", "stop"}, wantErr: `ctl: 404 Not Found: unknown guest "nosuch"`},
	} {
		e.guests.mu.Lock()
		e.guests.calls = nil
		e.guests.mu.Unlock()
		out, err := e.run(tc.role, tc.args...)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ctl %q as %s: %v", tc.args, tc.role, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("ctl %q as %s: err = %v, want %s", tc.args, tc.role, err, tc.wantErr)
		case tc.wantErr != "" && ExitCode(err) != 1:
			t.Errorf("ctl %q as %s: exit code %d, want 1", tc.args, tc.role, ExitCode(err))
		}
		if out != tc.want {
			t.Errorf("ctl %q as %s: stdout\n%s\nwant\n%s", tc.args, tc.role, out, tc.want)
		}
		if got := e.guests.Calls(); !reflect.DeepEqual(got, tc.wantCalls) {
			t.Errorf("ctl %q as %s: vmm calls %q, want %q", tc.args, tc.role, got, tc.wantCalls)
		}
	}
	if calls := e.host.Calls(); len(calls) != 0 {
		t.Errorf("host calls %q, want none", calls)
	}
	// Every start, stop and restart asked for is in the audit log, the
	// viewer's denied.
	recs, err := e.log.Records(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %s %s %t %d", r.Actor, r.Action, r.Target, r.Allowed, r.Status))
	}
	want := []string{
		"viewer user guests.start web1 false 403",
		"operator user guests.start web1 true 202",
		"operator user guests.stop web1 true 202",
		"admin user guests.restart web1 true 202",
		"operator user guests.start db1 true 202",
		"operator user guests.start db1 true 502",
		"operator user guests.stop nosuch true 202",
		"operator user guests.stop nosuch true 404",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCtlNoGuests(t *testing.T) {
	e := startCtlWith(t, nil)
	for _, args := range [][]string{{"guests"}, {"guest", "web1"}, {"guest", "web1", "console"}, {"guest", "web1", "start"}} {
		out, err := e.run(pki.RoleOperator, args...)
		if want := "ctl: 404 Not Found: this host runs no guests"; err == nil || err.Error() != want || out != "" {
			t.Errorf("ctl %q on a host without guests: stdout %q, err %v; want %s", args, out, err, want)
		}
	}
}

func TestCtlTerminalSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\n\tindented\n":              "plain text\n\tindented\n",
		"\x1b[1;31mred\x1b[0m \x1b[2J\x1b[?25l": "red ",
		"crlf\r\nline\roverwritten":             "crlf\nline\\x0doverwritten",
		"title \x1b]0;pwned\x07 bell":           "title \\x1b]0;pwned\\x07 bell",
		"cut \x1b[12":                           "cut \\x1b[12",
		"c1 \u009b31m del \x7f":                 "c1 \\x9b31m del \\x7f",
		"bad \xff\xfe utf-8 é":                  "bad \\xff\\xfe utf-8 é",
		"bidi \u202egnp.exe":                    "bidi \\u202egnp.exe",
		"\ufffd stays":                          "\ufffd stays",
	} {
		if got := ctlTerminalSafe(in); got != want {
			t.Errorf("ctlTerminalSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCtlEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"https://hv01.example:9443": "https://hv01.example:9443",
		"https://hv01.example":      "https://hv01.example:8443",
		"https://[2001:db8::1]/":    "https://[2001:db8::1]:8443",
	} {
		u, err := ctlEndpoint(in)
		if err != nil || u.String() != want {
			t.Errorf("ctlEndpoint(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}

func TestCtlWrongCA(t *testing.T) {
	e := startCtl(t)
	other, err := pki.Init(filepath.Join(t.TempDir(), "other"), pki.InitOptions{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(caPath, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := e.run(pki.RoleAdmin, "--ca", caPath, "reboot")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") || out != "" {
		t.Errorf("reboot against a server the CA did not sign: stdout %q, err %v; want an unknown authority error", out, err)
	}
	if calls := e.host.Calls(); len(calls) != 0 {
		t.Errorf("host calls %q, want none", calls)
	}
}
