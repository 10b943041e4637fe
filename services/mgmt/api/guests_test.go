package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/api"
	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/vmm"
)

var (
	web1 = vmm.Status{Name: "web1", State: "running", Reason: "booted", Autostart: true, ID: 3, PID: 4242,
		Label: "system_u:system_r:svirt_t:s0:c12,c345", Tap: "vnet0", Bridge: "hvbr0", VID: 100,
		Cgroup:   "/sys/fs/cgroup/machine/web1",
		Ceilings: &vmm.Ceilings{CPUMax: "200000 100000", CPUWeight: "100", MemoryMax: "4294967296", PIDsMax: "max"},
		Want:     vmm.Ceilings{CPUMax: "200000 100000", CPUWeight: "100", MemoryMax: "4294967296", PIDsMax: "max"},
		Since:    time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	db1 = vmm.Status{Name: "db1", State: "shutoff", Reason: "crashed", Failed: true, Tap: "vnet1", Bridge: "hvbr0",
		Want:     vmm.Ceilings{CPUMax: "max 100000", CPUWeight: "100", MemoryMax: "max", PIDsMax: "max"},
		Restarts: 3, Error: "crashed 4 times in 10m0s", Since: time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)}
)

// fakeGuests is the vmm.Host behind a real vmm.Handler: web1 and db1, db1
// failing to start. It records what it was asked to do.
type fakeGuests struct {
	mu    sync.Mutex
	calls []string
}

var _ vmm.Host = (*fakeGuests)(nil)

func (f *fakeGuests) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeGuests) List() []vmm.Status { return []vmm.Status{web1, db1} }

func (f *fakeGuests) Get(name string) (vmm.Status, error) {
	switch name {
	case "web1":
		return web1, nil
	case "db1":
		return db1, nil
	}
	return vmm.Status{}, fmt.Errorf("%w %q", vmm.ErrUnknownGuest, name)
}

func (f *fakeGuests) act(verb, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, verb+" "+name)
	f.mu.Unlock()
	if name == "db1" {
		return fmt.Errorf("%s %s: libvirt: internal error: no disk", verb, name)
	}
	return nil
}

func (f *fakeGuests) Start(_ context.Context, name string) error   { return f.act("start", name) }
func (f *fakeGuests) Stop(_ context.Context, name string) error    { return f.act("stop", name) }
func (f *fakeGuests) Restart(_ context.Context, name string) error { return f.act("restart", name) }

func (f *fakeGuests) Console(name string) ([]byte, error) {
	if _, err := f.Get(name); err != nil {
		return nil, err
	}
	return []byte("login: \x1b[1mroot\x1b[0m\r\n\xff"), nil
}

// shortDir is a temporary directory with a path short enough for a unix
// socket (108 bytes), which t.TempDir's, named for the test, may not be.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveVMM serves vmm's real handler for host on a unix socket and gives
// the socket's path.
func serveVMM(t testing.TB, host vmm.Host) string {
	t.Helper()
	sock := filepath.Join(shortDir(t), "vmm.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(vmm.Handler(host))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

// startGuests is start with guests: nil for a host that runs none.
func startGuests(t *testing.T, p *testPKI, guests api.Guests) *env {
	t.Helper()
	e := &env{host: &fakeHost{}, log: openLog(t), pki: p}
	srv := httptest.NewUnstartedServer(api.New(api.Options{Host: e.host, Guests: guests, Audit: e.log}))
	srv.TLS = p.server
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func TestGuests(t *testing.T) {
	p := newPKI(t)
	rec := func(seq uint64, role pki.Role, method, path, action, target string, allowed bool, code int, detail string) audit.Record {
		return audit.Record{Seq: seq, Actor: actors[role], Role: string(role), Method: method, Path: path, Action: action,
			Target: target, Allowed: allowed, Status: code, Detail: detail}
	}
	const noGuests = `{"error":"this host runs no guests"}` + "\n"
	// Every case runs against vmm serving fakeGuests, against no vmm
	// (api.Options.Guests nil) and against a vmm socket nothing listens on.
	for _, tc := range []struct {
		name               string
		role               pki.Role
		method, path, body string
		want               int
		wantAllow          string
		wantBody           string
		wantCalls          []string
		wantAudit          []audit.Record
		// How the same request is answered and audited on a host without
		// guests, and with vmm down (whose message holds a temporary path,
		// so only its start is compared).
		noGuests      int
		noGuestsAudit []audit.Record
		down          int
		downPrefix    string
		downAudit     []audit.Record
	}{
		{name: "viewer lists guests", role: pki.RoleViewer, method: "GET", path: "/v1/guests",
			want: 200, wantBody: mustJSON(vmm.ListReply{Guests: []vmm.Status{web1, db1}}),
			noGuests: 404, down: 503, downPrefix: `{"error":"vmm unreachable: vmm at `},
		{name: "viewer reads a guest", role: pki.RoleViewer, method: "GET", path: "/v1/guests/web1",
			want: 200, wantBody: mustJSON(web1), noGuests: 404, down: 503},
		{name: "unknown guest", role: pki.RoleViewer, method: "GET", path: "/v1/guests/nosuch",
			want: 404, wantBody: `{"error":"unknown guest \"nosuch\""}` + "\n", noGuests: 404, down: 503},
		{name: "viewer reads a console", role: pki.RoleViewer, method: "GET", path: "/v1/guests/web1/console",
			want: 200, wantBody: `{"guest":"web1","console":"login: \u001b[1mroot\u001b[0m\r\n\ufffd"}` + "\n",
			noGuests: 404, down: 503},
		{name: "console of unknown guest", role: pki.RoleViewer, method: "GET", path: "/v1/guests/nosuch/console",
			want: 404, wantBody: `{"error":"unknown guest \"nosuch\""}` + "\n", noGuests: 404, down: 503},
		{name: "list takes no parameters", role: pki.RoleViewer, method: "GET", path: "/v1/guests?all=1",
			want: 400, wantBody: `{"error":"unknown query parameter \"all\": /v1/guests takes none"}` + "\n", noGuests: 404, down: 400},

		{name: "viewer may not start", role: pki.RoleViewer, method: "POST", path: "/v1/guests/web1/start",
			want: 403, wantBody: `{"error":"guests.start needs role operator: \"vera\" has role viewer"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleViewer, "POST", "/v1/guests/web1/start", "guests.start", "web1", false, 403,
				`guests.start needs role operator: "vera" has role viewer`)},
			noGuests: 403, down: 403},
		{name: "operator starts", role: pki.RoleOperator, method: "POST", path: "/v1/guests/web1/start",
			want: 202, wantBody: mustJSON(web1), wantCalls: []string{"start web1"},
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 202, "")},
			noGuests:  404,
			noGuestsAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 404,
				"this host runs no guests")},
			down: 503, downPrefix: `{"error":"vmm unreachable: vmm at `,
			downAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 503, "vmm unreachable: …"),
			}},
		{name: "operator stops", role: pki.RoleOperator, method: "POST", path: "/v1/guests/web1/stop", body: "{}",
			want: 202, wantBody: mustJSON(web1), wantCalls: []string{"stop web1"},
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/stop", "guests.stop", "web1", true, 202, "")},
			noGuests:  404,
			noGuestsAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/stop", "guests.stop", "web1", true, 404,
				"this host runs no guests")},
			down: 503,
			downAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/stop", "guests.stop", "web1", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/guests/web1/stop", "guests.stop", "web1", true, 503, "vmm unreachable: …"),
			}},
		{name: "admin restarts", role: pki.RoleAdmin, method: "POST", path: "/v1/guests/web1/restart",
			want: 202, wantBody: mustJSON(web1), wantCalls: []string{"restart web1"},
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/guests/web1/restart", "guests.restart", "web1", true, 202, "")},
			noGuests:  404,
			noGuestsAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/guests/web1/restart", "guests.restart", "web1", true, 404,
				"this host runs no guests")},
			down: 503,
			downAudit: []audit.Record{
				rec(1, pki.RoleAdmin, "POST", "/v1/guests/web1/restart", "guests.restart", "web1", true, 202, ""),
				rec(2, pki.RoleAdmin, "POST", "/v1/guests/web1/restart", "guests.restart", "web1", true, 503, "vmm unreachable: …"),
			}},
		{name: "start unknown guest", role: pki.RoleOperator, method: "POST", path: "/v1/guests/nosuch/start",
			want: 404, wantBody: `{"error":"unknown guest \"nosuch\""}` + "\n",
			wantAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/guests/nosuch/start", "guests.start", "nosuch", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/guests/nosuch/start", "guests.start", "nosuch", true, 404, `unknown guest "nosuch"`),
			},
			noGuests: 404,
			noGuestsAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/nosuch/start", "guests.start", "nosuch", true, 404,
				"this host runs no guests")},
			down: 503,
			downAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/guests/nosuch/start", "guests.start", "nosuch", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/guests/nosuch/start", "guests.start", "nosuch", true, 503, "vmm unreachable: …"),
			}},
		{name: "start fails in vmm", role: pki.RoleOperator, method: "POST", path: "/v1/guests/db1/start",
			want: 502, wantBody: `{"error":"vmm: 500 Internal Server Error: start db1: libvirt: internal error: no disk"}` + "\n",
			wantCalls: []string{"start db1"},
			wantAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/guests/db1/start", "guests.start", "db1", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/guests/db1/start", "guests.start", "db1", true, 502,
					"vmm: 500 Internal Server Error: start db1: libvirt: internal error: no disk"),
			},
			noGuests: 404,
			noGuestsAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/db1/start", "guests.start", "db1", true, 404,
				"this host runs no guests")},
			down: 503,
			downAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/guests/db1/start", "guests.start", "db1", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/guests/db1/start", "guests.start", "db1", true, 503, "vmm unreachable: …"),
			}},
		{name: "start with an unknown field", role: pki.RoleOperator, method: "POST", path: "/v1/guests/web1/start", body: `{"force":true}`,
			want: 400, wantBody: `{"error":"request body: json: unknown field \"force\""}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 400,
				`request body: json: unknown field "force"`)},
			noGuests: 404,
			noGuestsAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 404,
				"this host runs no guests")},
			down: 400,
			downAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/guests/web1/start", "guests.start", "web1", true, 400,
				`request body: json: unknown field "force"`)}},

		{name: "start with GET", role: pki.RoleAdmin, method: "GET", path: "/v1/guests/web1/start",
			want: 405, wantAllow: "POST", wantBody: `{"error":"GET /v1/guests/web1/start: method not allowed, want POST"}` + "\n",
			noGuests: 405, down: 405},
		{name: "guest with POST", role: pki.RoleAdmin, method: "POST", path: "/v1/guests/web1",
			want: 405, wantAllow: "GET", wantBody: `{"error":"POST /v1/guests/web1: method not allowed, want GET"}` + "\n",
			noGuests: 405, down: 405},
		{name: "unknown verb", role: pki.RoleAdmin, method: "POST", path: "/v1/guests/web1/pause",
			want: 404, wantBody: `{"error":"no API path /v1/guests/web1/pause"}` + "\n", noGuests: 404, down: 404},
		{name: "empty guest name", role: pki.RoleAdmin, method: "POST", path: "/v1/guests//start",
			want: 404, wantBody: `{"error":"no API path /v1/guests//start"}` + "\n", noGuests: 404, down: 404},
		{name: "trailing slash", role: pki.RoleViewer, method: "GET", path: "/v1/guests/",
			want: 404, wantBody: `{"error":"no API path /v1/guests/"}` + "\n", noGuests: 404, down: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			guests := &fakeGuests{}
			e := startGuests(t, p, &vmm.Client{Socket: serveVMM(t, guests)})
			code, allow, body := e.do(t, tc.role, tc.method, tc.path, tc.body)
			if code != tc.want || body != tc.wantBody {
				t.Errorf("%s %s as %s = %d %q, want %d %q", tc.method, tc.path, tc.role, code, body, tc.want, tc.wantBody)
			}
			if allow != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", allow, tc.wantAllow)
			}
			if got := guests.Calls(); !reflect.DeepEqual(got, tc.wantCalls) {
				t.Errorf("vmm calls = %q, want %q", got, tc.wantCalls)
			}
			if got := records(t, e.log, "127.0.0.1"); !reflect.DeepEqual(got, tc.wantAudit) {
				t.Errorf("audit log:\n got %+v\nwant %+v", got, tc.wantAudit)
			}
			if calls := e.host.Calls(); len(calls) != 0 {
				t.Errorf("host calls = %q, want none", calls)
			}

			// A host without guests.
			e = startGuests(t, p, nil)
			code, _, body = e.do(t, tc.role, tc.method, tc.path, tc.body)
			wantBody := noGuests
			if tc.noGuests != 404 || strings.HasPrefix(tc.wantBody, `{"error":"no API path`) {
				wantBody = tc.wantBody
			}
			if code != tc.noGuests || body != wantBody {
				t.Errorf("without guests: %s %s as %s = %d %q, want %d %q", tc.method, tc.path, tc.role, code, body, tc.noGuests, wantBody)
			}
			wantAudit := tc.noGuestsAudit
			if tc.noGuests == 403 {
				wantAudit = tc.wantAudit
			}
			if got := records(t, e.log, "127.0.0.1"); !reflect.DeepEqual(got, wantAudit) {
				t.Errorf("without guests: audit log:\n got %+v\nwant %+v", got, wantAudit)
			}

			// vmm down: its socket's path names nothing.
			e = startGuests(t, p, &vmm.Client{Socket: filepath.Join(shortDir(t), "vmm.sock")})
			code, _, body = e.do(t, tc.role, tc.method, tc.path, tc.body)
			prefix := tc.downPrefix
			if prefix == "" && tc.down == 503 {
				prefix = `{"error":"vmm unreachable: `
			}
			switch {
			case code != tc.down:
				t.Errorf("vmm down: %s %s as %s = %d %q, want %d", tc.method, tc.path, tc.role, code, body, tc.down)
			case code == 503 && (!strings.HasPrefix(body, prefix) || !strings.Contains(body, "connect: no such file or directory")):
				t.Errorf("vmm down: %s %s as %s = %d %q, want %d %s… connect: no such file or directory", tc.method, tc.path, tc.role,
					code, body, tc.down, prefix)
			case code != 503 && body != tc.wantBody:
				t.Errorf("vmm down: %s %s as %s = %d %q, want %d %q", tc.method, tc.path, tc.role, code, body, tc.down, tc.wantBody)
			}
			got := records(t, e.log, "127.0.0.1")
			for i := range got {
				if d, ok := strings.CutPrefix(got[i].Detail, "vmm unreachable: "); ok && d != "" {
					got[i].Detail = "vmm unreachable: …"
				}
			}
			wantAudit = tc.downAudit
			if tc.down == 403 {
				wantAudit = tc.wantAudit
			}
			if !reflect.DeepEqual(got, wantAudit) {
				t.Errorf("vmm down: audit log:\n got %+v\nwant %+v", got, wantAudit)
			}
		})
	}
}

// TestGuestsAuditFailsClosed: a guest's start the audit log cannot take is
// not asked of vmm.
func TestGuestsAuditFailsClosed(t *testing.T) {
	guests := &fakeGuests{}
	e := startGuests(t, newPKI(t), &vmm.Client{Socket: serveVMM(t, guests)})
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	code, _, body := e.do(t, pki.RoleOperator, "POST", "/v1/guests/web1/start", "")
	if want := `{"error":"the audit log cannot record this request, so it was not carried out"}` + "\n"; code != 503 || body != want {
		t.Errorf("start with the audit log closed = %d %q, want 503 %q", code, body, want)
	}
	if calls := guests.Calls(); len(calls) != 0 {
		t.Errorf("vmm calls = %q, want none", calls)
	}
}
