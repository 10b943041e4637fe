package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/api"
	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
	"hardvisor.dev/hardvisor/services/vmm"
)

var sample = status.Report{
	Version: "1.2.3", Hostname: "hv01", Profile: "production", Boots: 2,
	Gate: status.Gate{Decided: true, Ready: true, At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
	Services: []status.Service{
		{Name: "libvirtd", State: "Ready", Pid: 310, Required: true, Memory: 12 << 20, PIDs: 4},
		{Name: "mgmtd", State: "Ready", Pid: 320, Restarts: 1, LastExit: "exit status 1", Memory: 8 << 20, PIDs: 6},
	},
	Hardening: []status.Check{{Name: "kernel.kptr_restrict", Want: "2", Got: "2", OK: true}},
	Network:   &status.Network{Namespace: "/run/netns/mgmt", MgmtNIC: "eth0", Address: "192.0.2.10/24", DHCP: true},
}

// fakeHost records what the API asked of it.
type fakeHost struct {
	mu    sync.Mutex
	calls []string
	fail  error // returned by every method when set
}

func (f *fakeHost) call(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.fail
}

func (f *fakeHost) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func known(name string) bool { return name == "libvirtd" || name == "mgmtd" }

func (f *fakeHost) Status(context.Context) (*status.Report, error) {
	if err := f.call("status"); err != nil {
		return nil, err
	}
	r := sample
	return &r, nil
}

func (f *fakeHost) Logs(_ context.Context, name string, n int) ([]string, error) {
	if err := f.call("logs %s %d", name, n); err != nil {
		return nil, err
	}
	if !known(name) {
		return nil, fmt.Errorf("logs %q: %w", name, api.ErrUnknownService)
	}
	lines := []string{"one", "two", "three"}
	return lines[len(lines)-min(n, len(lines)):], nil
}

func (f *fakeHost) Restart(_ context.Context, name string) error {
	if err := f.call("restart %s", name); err != nil {
		return err
	}
	if !known(name) {
		return fmt.Errorf("restart %q: %w", name, api.ErrUnknownService)
	}
	return nil
}

func (f *fakeHost) Power(_ context.Context, action string) error {
	return f.call("power %s", action)
}

// testPKI is a CA with a server certificate for 127.0.0.1 and one client
// per role: vera the viewer, otto the operator, ada the admin.
type testPKI struct {
	server  *tls.Config
	clients map[pki.Role]*tls.Config
	certs   map[pki.Role]*x509.Certificate
	// serverCert is a certificate from the CA without a role.
	serverCert *x509.Certificate
}

var actors = map[pki.Role]string{pki.RoleViewer: "vera", pki.RoleOperator: "otto", pki.RoleAdmin: "ada"}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.Init(t.TempDir(), pki.InitOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer("127.0.0.1", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{clients: map[pki.Role]*tls.Config{}, certs: map[pki.Role]*x509.Certificate{}}
	if p.server, err = pki.ServerTLSConfig(certPEM, keyPEM, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	if p.serverCert, err = pki.ParseCertificatePEM(certPEM); err != nil {
		t.Fatal(err)
	}
	for _, role := range pki.Roles {
		certPEM, keyPEM, err := ca.IssueClient(actors[role], role, 0)
		if err != nil {
			t.Fatal(err)
		}
		if p.clients[role], err = pki.ClientTLSConfig(certPEM, keyPEM, ca.CertPEM, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		if p.certs[role], err = pki.ParseCertificatePEM(certPEM); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

var auditTime = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func openLog(t testing.TB) *audit.Log {
	t.Helper()
	log, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), audit.Options{Now: func() time.Time { return auditTime }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return log
}

// env is the API served over mutual TLS on 127.0.0.1 to a fake host.
type env struct {
	host *fakeHost
	log  *audit.Log
	url  string
	pki  *testPKI
}

func start(t *testing.T, p *testPKI) *env {
	t.Helper()
	e := &env{host: &fakeHost{}, log: openLog(t), pki: p}
	srv := httptest.NewUnstartedServer(api.New(api.Options{Host: e.host, Audit: e.log}))
	srv.TLS = p.server
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// do sends a request as role and returns the status, Allow header and body.
func (e *env) do(t *testing.T, role pki.Role, method, path, body string) (int, string, string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: e.pki.clients[role]}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return resp.StatusCode, resp.Header.Get("Allow"), string(b)
}

// records reads the whole audit log back, without what changes from run to
// run (the client's port, hashes).
func records(t *testing.T, log *audit.Log, remoteHost string) []audit.Record {
	t.Helper()
	recs, err := log.Records(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		r := &recs[i]
		if !strings.HasPrefix(r.Remote, remoteHost+":") {
			t.Errorf("record %d: remote %q, want %s:PORT", r.Seq, r.Remote, remoteHost)
		}
		if !r.Time.Equal(auditTime) {
			t.Errorf("record %d: time %s, want %s", r.Seq, r.Time, auditTime)
		}
		r.Remote, r.Time, r.Prev, r.Hash = "", time.Time{}, "", ""
	}
	return recs
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

func TestAPI(t *testing.T) {
	p := newPKI(t)
	hostDown := errors.New("control socket: connection refused")
	// rec is an audit record as stored (Seq counted from 1), without
	// remote, time and hashes.
	rec := func(seq uint64, role pki.Role, method, path, action, target string, allowed bool, code int, detail string) audit.Record {
		return audit.Record{Seq: seq, Actor: actors[role], Role: string(role), Method: method, Path: path, Action: action,
			Target: target, Allowed: allowed, Status: code, Detail: detail}
	}
	const restart = "/v1/services/libvirtd/restart"
	for _, tc := range []struct {
		name               string
		role               pki.Role
		method, path, body string
		fail               error
		want               int
		wantAllow          string
		wantBody           string
		wantCalls          []string
		wantAudit          []audit.Record
	}{
		{name: "viewer reads status", role: pki.RoleViewer, method: "GET", path: "/v1/status",
			want: 200, wantBody: mustJSON(sample), wantCalls: []string{"status"}},
		{name: "viewer reads hardening", role: pki.RoleViewer, method: "GET", path: "/v1/hardening",
			want: 200, wantBody: `[{"name":"kernel.kptr_restrict","want":"2","got":"2","ok":true}]` + "\n", wantCalls: []string{"status"}},
		{name: "viewer reads services", role: pki.RoleViewer, method: "GET", path: "/v1/services",
			want: 200, wantBody: mustJSON(sample.Services), wantCalls: []string{"status"}},
		{name: "viewer reads network", role: pki.RoleViewer, method: "GET", path: "/v1/network",
			want: 200, wantBody: `{"namespace":"/run/netns/mgmt","mgmtNIC":"eth0","address":"192.0.2.10/24","dhcp":true}` + "\n",
			wantCalls: []string{"status"}},
		{name: "viewer reads logs", role: pki.RoleViewer, method: "GET", path: "/v1/services/libvirtd/logs?lines=2",
			want: 200, wantBody: `{"service":"libvirtd","lines":["two","three"]}` + "\n", wantCalls: []string{"logs libvirtd 2"}},
		{name: "logs default 100 lines", role: pki.RoleViewer, method: "GET", path: "/v1/services/mgmtd/logs",
			want: 200, wantBody: `{"service":"mgmtd","lines":["one","two","three"]}` + "\n", wantCalls: []string{"logs mgmtd 100"}},
		{name: "logs of unknown service", role: pki.RoleViewer, method: "GET", path: "/v1/services/nosuch/logs",
			want: 404, wantBody: `{"error":"unknown service \"nosuch\""}` + "\n", wantCalls: []string{"logs nosuch 100"}},
		{name: "logs lines 0", role: pki.RoleViewer, method: "GET", path: "/v1/services/mgmtd/logs?lines=0",
			want: 400, wantBody: `{"error":"lines=\"0\": want a number from 1 to 10000"}` + "\n"},
		{name: "logs lines over max", role: pki.RoleViewer, method: "GET", path: "/v1/services/mgmtd/logs?lines=10001",
			want: 400, wantBody: `{"error":"lines=\"10001\": want a number from 1 to 10000"}` + "\n"},
		{name: "logs lines not a number", role: pki.RoleViewer, method: "GET", path: "/v1/services/mgmtd/logs?lines=ten",
			want: 400, wantBody: `{"error":"lines=\"ten\": want a number from 1 to 10000"}` + "\n"},
		{name: "logs lines twice", role: pki.RoleViewer, method: "GET", path: "/v1/services/mgmtd/logs?lines=1&lines=2",
			want: 400, wantBody: `{"error":"query parameter \"lines\" given 2 times"}` + "\n"},
		{name: "logs unknown parameter", role: pki.RoleViewer, method: "GET", path: "/v1/services/mgmtd/logs?line=5",
			want: 400, wantBody: `{"error":"unknown query parameter \"line\": want lines"}` + "\n"},
		{name: "status takes no parameters", role: pki.RoleViewer, method: "GET", path: "/v1/status?verbose=1",
			want: 400, wantBody: `{"error":"unknown query parameter \"verbose\": /v1/status takes none"}` + "\n"},
		{name: "host down", role: pki.RoleViewer, method: "GET", path: "/v1/status", fail: hostDown,
			want: 502, wantBody: `{"error":"host: status: control socket: connection refused"}` + "\n", wantCalls: []string{"status"}},

		{name: "viewer may not restart", role: pki.RoleViewer, method: "POST", path: restart,
			want: 403, wantBody: `{"error":"services.restart needs role operator: \"vera\" has role viewer"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleViewer, "POST", restart, "services.restart", "libvirtd", false, 403,
				`services.restart needs role operator: "vera" has role viewer`)}},
		{name: "operator restarts", role: pki.RoleOperator, method: "POST", path: restart,
			want: 202, wantBody: `{"service":"libvirtd","restarted":true}` + "\n", wantCalls: []string{"restart libvirtd"},
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", restart, "services.restart", "libvirtd", true, 202, "")}},
		{name: "restart with an empty object", role: pki.RoleOperator, method: "POST", path: restart, body: "{}\n",
			want: 202, wantBody: `{"service":"libvirtd","restarted":true}` + "\n", wantCalls: []string{"restart libvirtd"},
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", restart, "services.restart", "libvirtd", true, 202, "")}},
		{name: "restart with an unknown field", role: pki.RoleOperator, method: "POST", path: restart, body: `{"force":true}`,
			want: 400, wantBody: `{"error":"request body: json: unknown field \"force\""}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", restart, "services.restart", "libvirtd", true, 400,
				`request body: json: unknown field "force"`)}},
		{name: "restart unknown service", role: pki.RoleOperator, method: "POST", path: "/v1/services/nosuch/restart",
			want: 404, wantBody: `{"error":"unknown service \"nosuch\""}` + "\n", wantCalls: []string{"restart nosuch"},
			wantAudit: []audit.Record{
				rec(1, pki.RoleOperator, "POST", "/v1/services/nosuch/restart", "services.restart", "nosuch", true, 202, ""),
				rec(2, pki.RoleOperator, "POST", "/v1/services/nosuch/restart", "services.restart", "nosuch", true, 404,
					`unknown service "nosuch"`),
			}},
		{name: "restart, host down", role: pki.RoleAdmin, method: "POST", path: restart, fail: hostDown,
			want: 502, wantBody: `{"error":"host: control socket: connection refused"}` + "\n", wantCalls: []string{"restart libvirtd"},
			wantAudit: []audit.Record{
				rec(1, pki.RoleAdmin, "POST", restart, "services.restart", "libvirtd", true, 202, ""),
				rec(2, pki.RoleAdmin, "POST", restart, "services.restart", "libvirtd", true, 502, "host: control socket: connection refused"),
			}},
		{name: "restart with GET", role: pki.RoleAdmin, method: "GET", path: restart,
			want: 405, wantAllow: "POST", wantBody: `{"error":"GET /v1/services/libvirtd/restart: method not allowed, want POST"}` + "\n"},

		{name: "admin reboots", role: pki.RoleAdmin, method: "POST", path: "/v1/power", body: `{"action":"reboot"}`,
			want: 202, wantBody: `{"action":"reboot","accepted":true}` + "\n", wantCalls: []string{"power reboot"},
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power.reboot", "", true, 202, "")}},
		{name: "admin powers off", role: pki.RoleAdmin, method: "POST", path: "/v1/power", body: `{"action":"poweroff"}`,
			want: 202, wantBody: `{"action":"poweroff","accepted":true}` + "\n", wantCalls: []string{"power poweroff"},
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power.poweroff", "", true, 202, "")}},
		{name: "operator may not power", role: pki.RoleOperator, method: "POST", path: "/v1/power", body: `{"action":"reboot"}`,
			want: 403, wantBody: `{"error":"power needs role admin: \"otto\" has role operator"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleOperator, "POST", "/v1/power", "power", "", false, 403,
				`power needs role admin: "otto" has role operator`)}},
		{name: "bad power action", role: pki.RoleAdmin, method: "POST", path: "/v1/power", body: `{"action":"halt"}`,
			want: 400, wantBody: `{"error":"power: unknown action \"halt\": want reboot or poweroff"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power", "", true, 400,
				`power: unknown action "halt": want reboot or poweroff`)}},
		{name: "power without a body", role: pki.RoleAdmin, method: "POST", path: "/v1/power",
			want: 400, wantBody: `{"error":"request body: want a JSON object"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power", "", true, 400, "request body: want a JSON object")}},
		{name: "power bad JSON", role: pki.RoleAdmin, method: "POST", path: "/v1/power", body: `{"action":`,
			want: 400, wantBody: `{"error":"request body: unexpected EOF"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power", "", true, 400, "request body: unexpected EOF")}},
		{name: "power two objects", role: pki.RoleAdmin, method: "POST", path: "/v1/power", body: `{"action":"reboot"}{"action":"reboot"}`,
			want: 400, wantBody: `{"error":"request body: more than one JSON value"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power", "", true, 400, "request body: more than one JSON value")}},
		{name: "power unknown field", role: pki.RoleAdmin, method: "POST", path: "/v1/power", body: `{"action":"reboot","now":true}`,
			want: 400, wantBody: `{"error":"request body: json: unknown field \"now\""}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power", "", true, 400, `request body: json: unknown field "now"`)}},
		{name: "power body too large", role: pki.RoleAdmin, method: "POST", path: "/v1/power",
			body: `{"action":"reboot"}` + strings.Repeat(" ", api.MaxBody),
			want: 413, wantBody: `{"error":"request body is over 65536 bytes"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleAdmin, "POST", "/v1/power", "power", "", true, 413, "request body is over 65536 bytes")}},
		{name: "power with GET", role: pki.RoleAdmin, method: "GET", path: "/v1/power",
			want: 405, wantAllow: "POST", wantBody: `{"error":"GET /v1/power: method not allowed, want POST"}` + "\n"},

		{name: "viewer may not read the audit log", role: pki.RoleViewer, method: "GET", path: "/v1/audit",
			want: 403, wantBody: `{"error":"audit.read needs role operator: \"vera\" has role viewer"}` + "\n",
			wantAudit: []audit.Record{rec(1, pki.RoleViewer, "GET", "/v1/audit", "audit.read", "", false, 403,
				`audit.read needs role operator: "vera" has role viewer`)}},
		{name: "operator reads the empty audit log", role: pki.RoleOperator, method: "GET", path: "/v1/audit",
			want: 200, wantBody: `{"head":{"seq":0,"hash":"` + audit.Genesis + `"},"records":[]}` + "\n"},
		{name: "audit limit over max", role: pki.RoleOperator, method: "GET", path: "/v1/audit?limit=1001",
			want: 400, wantBody: `{"error":"limit=\"1001\": want a number from 1 to 1000"}` + "\n"},
		{name: "audit after negative", role: pki.RoleOperator, method: "GET", path: "/v1/audit?after=-1",
			want: 400, wantBody: `{"error":"after=\"-1\": want a record's seq, 0 or more"}` + "\n"},

		{name: "status with POST", role: pki.RoleAdmin, method: "POST", path: "/v1/status",
			want: 405, wantAllow: "GET", wantBody: `{"error":"POST /v1/status: method not allowed, want GET"}` + "\n"},
		{name: "unknown path", role: pki.RoleViewer, method: "GET", path: "/v1/nope",
			want: 404, wantBody: `{"error":"no API path /v1/nope"}` + "\n"},
		{name: "unversioned path", role: pki.RoleViewer, method: "GET", path: "/status",
			want: 404, wantBody: `{"error":"no API path /status"}` + "\n"},
		{name: "trailing slash", role: pki.RoleViewer, method: "GET", path: "/v1/status/",
			want: 404, wantBody: `{"error":"no API path /v1/status/"}` + "\n"},
		{name: "service without verb", role: pki.RoleViewer, method: "GET", path: "/v1/services/libvirtd",
			want: 404, wantBody: `{"error":"no API path /v1/services/libvirtd"}` + "\n"},
		{name: "service unknown verb", role: pki.RoleAdmin, method: "POST", path: "/v1/services/libvirtd/stop",
			want: 404, wantBody: `{"error":"no API path /v1/services/libvirtd/stop"}` + "\n"},
		{name: "empty service name", role: pki.RoleAdmin, method: "POST", path: "/v1/services//restart",
			want: 404, wantBody: `{"error":"no API path /v1/services//restart"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, p)
			e.host.fail = tc.fail
			code, allow, body := e.do(t, tc.role, tc.method, tc.path, tc.body)
			if code != tc.want || body != tc.wantBody {
				t.Errorf("%s %s as %s = %d %q, want %d %q", tc.method, tc.path, tc.role, code, body, tc.want, tc.wantBody)
			}
			if allow != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", allow, tc.wantAllow)
			}
			if got := e.host.Calls(); !reflect.DeepEqual(got, tc.wantCalls) {
				t.Errorf("host calls = %q, want %q", got, tc.wantCalls)
			}
			if got := records(t, e.log, "127.0.0.1"); !reflect.DeepEqual(got, tc.wantAudit) {
				t.Errorf("audit log:\n got %+v\nwant %+v", got, tc.wantAudit)
			}
		})
	}
}

// TestAuditFailureFailsClosed: a change the audit log cannot take is not
// made; a denial stays a denial.
func TestAuditFailureFailsClosed(t *testing.T) {
	e := start(t, newPKI(t))
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	const unavailable = `{"error":"the audit log cannot record this request, so it was not carried out"}` + "\n"
	for _, tc := range []struct {
		role               pki.Role
		method, path, body string
		want               int
		wantBody           string
	}{
		{pki.RoleOperator, "POST", "/v1/services/libvirtd/restart", "", 503, unavailable},
		{pki.RoleAdmin, "POST", "/v1/power", `{"action":"poweroff"}`, 503, unavailable},
		{pki.RoleViewer, "POST", "/v1/services/libvirtd/restart", "", 403,
			`{"error":"services.restart needs role operator: \"vera\" has role viewer"}` + "\n"},
		{pki.RoleOperator, "GET", "/v1/audit", "", 500, ""},
	} {
		code, _, body := e.do(t, tc.role, tc.method, tc.path, tc.body)
		if code != tc.want || tc.wantBody != "" && body != tc.wantBody {
			t.Errorf("%s %s as %s with the audit log closed = %d %q, want %d %q", tc.method, tc.path, tc.role, code, body, tc.want, tc.wantBody)
		}
	}
	if calls := e.host.Calls(); len(calls) != 0 {
		t.Errorf("host calls = %q, want none", calls)
	}
}

// TestAuditPaging reads records back through the API, one page at a time.
func TestAuditPaging(t *testing.T) {
	e := start(t, newPKI(t))
	e.do(t, pki.RoleOperator, "POST", "/v1/services/libvirtd/restart", "")
	e.do(t, pki.RoleOperator, "POST", "/v1/services/mgmtd/restart", "")
	e.do(t, pki.RoleViewer, "POST", "/v1/power", `{"action":"reboot"}`)
	all, err := e.log.Records(0, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("Records = %d records, %v; want 3", len(all), err)
	}
	seq, hash := e.log.Head()
	for _, tc := range []struct {
		query string
		want  []audit.Record
	}{
		{"", all},
		{"?after=1&limit=1", all[1:2]},
		{"?limit=2", all[:2]},
		{"?after=2", all[2:]},
		{"?after=3", []audit.Record{}},
		{"?after=99", []audit.Record{}},
	} {
		code, _, body := e.do(t, pki.RoleAdmin, "GET", "/v1/audit"+tc.query, "")
		want := mustJSON(api.AuditReply{Head: api.AuditHead{Seq: seq, Hash: hash}, Records: tc.want})
		if code != 200 || body != want {
			t.Errorf("GET /v1/audit%s = %d %s, want 200 %s", tc.query, code, body, want)
		}
	}
	if all[2].Action != "power" || all[2].Actor != "vera" || all[2].Allowed {
		t.Errorf("record 3 = %+v, want vera's denied power request", all[2])
	}
}

// TestWithoutVerifiedRole calls the handler without the TLS stack, as a
// misconfigured server would: no certificate is 401, a certificate without
// a role 403, and both are audited.
func TestWithoutVerifiedRole(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name     string
		tls      *tls.ConnectionState
		want     int
		wantBody string
		wantRec  audit.Record
	}{
		{"no TLS", nil, 401, `{"error":"a verified client certificate is required"}` + "\n",
			audit.Record{Seq: 1, Method: "POST", Path: "/v1/services/libvirtd/restart", Action: "services.restart", Target: "libvirtd",
				Status: 401, Detail: "a verified client certificate is required"}},
		{"unverified certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.certs[pki.RoleAdmin]}}, 401,
			`{"error":"a verified client certificate is required"}` + "\n",
			audit.Record{Seq: 1, Method: "POST", Path: "/v1/services/libvirtd/restart", Action: "services.restart", Target: "libvirtd",
				Status: 401, Detail: "a verified client certificate is required"}},
		{"no role", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{p.serverCert}}}, 403,
			`{"error":"certificate \"127.0.0.1\" has no role: want one subject OU hardvisor-role:\u003crole\u003e"}` + "\n",
			audit.Record{Seq: 1, Actor: "127.0.0.1", Method: "POST", Path: "/v1/services/libvirtd/restart", Action: "services.restart",
				Target: "libvirtd", Status: 403, Detail: `certificate "127.0.0.1" has no role: want one subject OU hardvisor-role:<role>`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, log := &fakeHost{}, openLog(t)
			h := api.New(api.Options{Host: host, Audit: log})
			req := httptest.NewRequest("POST", "/v1/services/libvirtd/restart", nil)
			req.TLS = tc.tls
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.want || w.Body.String() != tc.wantBody {
				t.Errorf("= %d %q, want %d %q", w.Code, w.Body.String(), tc.want, tc.wantBody)
			}
			if calls := host.Calls(); len(calls) != 0 {
				t.Errorf("host calls = %q, want none", calls)
			}
			got := records(t, log, "192.0.2.1")
			if want := []audit.Record{tc.wantRec}; !reflect.DeepEqual(got, want) {
				t.Errorf("audit log:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// FuzzRequest sends arbitrary requests as an admin: whatever comes in, the
// answer is one of the documented statuses with a JSON body, and the host
// or vmm is asked to change something only for a request answered 202 (or
// the 404, 502 of a failed change).
func FuzzRequest(f *testing.F) {
	p := newPKI(f)
	log := openLog(f)
	vmmHost := &fakeGuests{}
	guests := &vmm.Client{Socket: serveVMM(f, vmmHost)}
	for _, s := range [][3]string{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/services/libvirtd/logs", "lines=5"},
		{"GET", "/v1/audit", "after=1&limit=2"},
		{"POST", "/v1/services/libvirtd/restart", ""},
		{"POST", "/v1/power", ""},
		{"PUT", "/v1/services/%2e%2e/restart", "a=%zz"},
		{"GET", "/v1/guests", ""},
		{"GET", "/v1/guests/web1/console", ""},
		{"POST", "/v1/guests/web1/stop", ""},
		{"POST", "/v1/guests/db1/start", ""},
		{"POST", "/v1/guests/../start", ""},
	} {
		f.Add(s[0], s[1], s[2], `{"action":"reboot"}`)
	}
	chains := [][]*x509.Certificate{{p.certs[pki.RoleAdmin]}}
	f.Fuzz(func(t *testing.T, method, path, rawQuery, body string) {
		host := &fakeHost{}
		vmmCalls := len(vmmHost.Calls())
		h := api.New(api.Options{Host: host, Guests: guests, Audit: log})
		req := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader(body)), RemoteAddr: "192.0.2.1:1234",
			TLS: &tls.ConnectionState{VerifiedChains: chains}}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 200, 202, 400, 404, 405, 413, 502:
		default:
			t.Fatalf("%s %s?%s: status %d", method, path, rawQuery, w.Code)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s?%s: body %q is not JSON", method, path, rawQuery, w.Body.String())
		}
		if w.Code >= 400 {
			var e api.ErrorReply
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s?%s: %d with body %q, want an error", method, path, rawQuery, w.Code, w.Body.String())
			}
		}
		for _, c := range host.Calls() {
			if strings.HasPrefix(c, "restart ") || strings.HasPrefix(c, "power ") {
				if w.Code != 202 && w.Code != 404 {
					t.Fatalf("%s %s?%s: host asked to %s, answered %d", method, path, rawQuery, c, w.Code)
				}
			}
		}
		if calls := vmmHost.Calls()[vmmCalls:]; len(calls) > 0 && w.Code != 202 && w.Code != 502 {
			t.Fatalf("%s %s?%s: vmm asked to %q, answered %d", method, path, rawQuery, calls, w.Code)
		}
	})
}
