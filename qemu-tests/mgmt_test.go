package qemutests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/services/catalog"
	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
)

// credentials are a client's certificate and key files' contents.
type credentials struct{ cert, key []byte }

// TestManagementAPI builds a debug host with the management API on, from
// an installation CA made here, and talks to it from this machine through
// the forwarded management port: an admin reads the status; a viewer may
// not restart a service (403) and the denial is in the audit log; an admin
// restarts one; no certificate, or one from another CA, fails the TLS
// handshake; an edit of the audit log is found by its verification.
// apiPKI is a test installation's management PKI: its CA, the API's
// server certificate and key for "hv-test", and the files a config names.
type apiPKI struct {
	ca                    *pki.CA
	caFile, cert, keyFile string
}

// newAPIPKI makes an installation CA and the API's server certificate in
// dir.
func newAPIPKI(t *testing.T, dir string) *apiPKI {
	t.Helper()
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca.IssueServer("hv-test", []string{"hv-test"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &apiPKI{ca: ca, caFile: filepath.Join(dir, "ca", pki.CertFile), cert: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server-key.pem")}
	for name, b := range map[string][]byte{p.cert: srvCert, p.keyFile: srvKey} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// apiConfig is the config's management.api line for p.
func (p *apiPKI) apiConfig() string {
	return fmt.Sprintf("  api: {port: 8443, clientCA: %s, serverCert: %s, serverKey: %s}\n", p.caFile, p.cert, p.keyFile)
}

func (p *apiPKI) issue(t *testing.T, name string, role pki.Role) credentials {
	t.Helper()
	c, k, err := p.ca.IssueClient(name, role, 0)
	if err != nil {
		t.Fatal(err)
	}
	return credentials{c, k}
}

// caller calls the API at endpoint as who (nil: no client certificate),
// trusting p's CA.
func (p *apiPKI) caller(t *testing.T, endpoint string) func(who *credentials, method, path, body string) (int, []byte, error) {
	return func(who *credentials, method, path, body string) (int, []byte, error) {
		t.Helper()
		var tc *tls.Config
		if who == nil {
			roots := x509.NewCertPool()
			roots.AddCert(p.ca.Cert)
			tc = &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "hv-test", RootCAs: roots}
		} else {
			var err error
			if tc, err = pki.ClientTLSConfig(who.cert, who.key, p.ca.CertPEM, "hv-test"); err != nil {
				t.Fatal(err)
			}
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 3 * time.Minute}
		req, err := http.NewRequestWithContext(context.Background(), method, endpoint+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, nil
	}
}

func TestManagementAPI(t *testing.T) {
	dir := t.TempDir()
	p := newAPIPKI(t, dir)
	admin, viewer := p.issue(t, "alice", pki.RoleAdmin), p.issue(t, "victor", pki.RoleViewer)
	other, err := pki.Init(filepath.Join(dir, "other"), pki.InitOptions{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := other.IssueClient("mallory", pki.RoleAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	intruder := credentials{c, k}

	cfg := `apiVersion: hardvisor.dev/v1
version: 0.1.0-mgmt
profile: debug
management:
` + p.apiConfig() + `services:
  - {name: steady, command: [/bbin/sleep, "100000"]}
`
	out := buildConfig(t, "mgmt", cfg)
	vm := directBoot(t, out, func(o *qemu.Options) {
		o.NICs = []qemu.NIC{{HostFwd: []string{"tcp:127.0.0.1:0-:8443"}}}
		o.ExtraArgs = []string{"-device", "virtio-rng-pci"}
	})
	expect(t, vm, readyLine("0.1.0-mgmt"), bootTimeout)
	call := p.caller(t, fmt.Sprintf("https://127.0.0.1:%d", vm.HostPort(8443)))

	code, body, err := call(&admin, "GET", "/v1/status", "")
	var r status.Report
	if err != nil || code != 200 {
		sh := &shell{t: t, vm: vm}
		t.Log(sh.run("dmesg | grep avc"))
	}
	if err != nil || code != 200 || json.Unmarshal(body, &r) != nil || r.Version != "0.1.0-mgmt" || !r.Gate.Ready {
		t.Fatalf("admin GET /v1/status: %d %v\n%s", code, err, body)
	}
	// mgmtd answers as an unprivileged user with no capabilities: it read
	// its key through its group, reached PID 1 through the control group,
	// and writes the audit log in the directory it was given.
	i := slices.IndexFunc(r.Services, func(s status.Service) bool { return s.Name == "mgmtd" })
	if i < 0 {
		t.Fatalf("no mgmtd in the report: %+v", r.Services)
	}
	if m := r.Services[i]; m.UID == nil || *m.UID != catalog.MgmtdUID || m.CapEff != "0000000000000000" {
		t.Errorf("mgmtd runs as uid %s with capabilities %q, want %d and none", m.User(), m.CapEff, catalog.MgmtdUID)
	}
	if code, body, err := call(&viewer, "POST", "/v1/services/steady/restart", ""); err != nil || code != 403 {
		t.Errorf("viewer restart: %d %v %s, want 403", code, err, body)
	}
	if code, body, err := call(&admin, "POST", "/v1/services/steady/restart", ""); err != nil || code != 202 {
		t.Errorf("admin restart: %d %v %s, want 202", code, err, body)
	}
	expect(t, vm, regexp.MustCompile(`hardvisor: service steady: Ready`), bootTimeout)
	if code, _, err := call(nil, "GET", "/v1/status", ""); err == nil {
		t.Errorf("no client certificate: %d, want a failed handshake", code)
	}
	if code, _, err := call(&intruder, "GET", "/v1/status", ""); err == nil {
		t.Errorf("another CA's certificate: %d, want a failed handshake", code)
	}

	code, body, err = call(&admin, "GET", "/v1/audit?limit=100", "")
	var page struct {
		Records []audit.Record `json:"records"`
	}
	if err != nil || code != 200 || json.Unmarshal(body, &page) != nil {
		t.Fatalf("GET /v1/audit: %d %v\n%s", code, err, body)
	}
	var denied, restarted bool
	for _, rec := range page.Records {
		denied = denied || rec.Actor == "victor" && !rec.Allowed && rec.Status == 403 && rec.Target == "steady"
		restarted = restarted || rec.Actor == "alice" && rec.Allowed && rec.Action == "services.restart"
	}
	if !denied || !restarted {
		t.Errorf("audit log lacks the denial (%v) or the restart (%v): %+v", denied, restarted, page.Records)
	}

	// The log on the host, through the debug shell: intact, and an edit
	// of one record is found.
	sh := &shell{t: t, vm: vm}
	logText := sh.run("cat " + catalog.AuditDir + "/audit.log")
	if _, err := audit.Verify(strings.NewReader(logText)); err != nil {
		t.Errorf("audit log on the host does not verify: %v\n%s", err, logText)
	}
	edited := strings.Replace(logText, `"actor":"victor"`, `"actor":"nobody"`, 1)
	if _, err := audit.Verify(strings.NewReader(edited)); err == nil || !strings.Contains(err.Error(), "edited") {
		t.Errorf("an edited audit log verifies: %v", err)
	}
	powerDown(t, vm)
}
