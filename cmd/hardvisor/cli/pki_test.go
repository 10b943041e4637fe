package cli

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/pki"
)

func runPKITest(args ...string) (stdout string, err error) {
	var o, e bytes.Buffer
	err = runPKI(args, &o, &e)
	return o.String(), err
}

func readPKICert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCertificatePEM(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func pkiUntil(c *x509.Certificate) string { return c.NotAfter.UTC().Format(time.DateOnly) }

func TestPKI(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")

	// init, with the flag after the directory
	out, err := runPKITest("init", dir, "--name", "lab")
	if err != nil {
		t.Fatalf("pki init: %v", err)
	}
	if want := dir + "/ca.pem: CA certificate \"hardvisor CA lab\"\n" + dir + "/ca-key.pem: CA private key\n"; out != want {
		t.Errorf("pki init stdout = %q, want %q", out, want)
	}
	if _, err := runPKITest("init", dir); pkiErr(err) != dir+"/ca.pem already exists: refusing to overwrite it" || ExitCode(err) != 1 {
		t.Errorf("pki init again: err = %v, want a refusal to overwrite (exit 1)", err)
	}
	ca, err := pki.Load(dir)
	if err != nil {
		t.Fatalf("Load after pki init: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	// client certificates: default prefix and validity, then --out and --days
	for _, tc := range []struct {
		args         []string
		prefix       string
		cn           string
		role         pki.Role
		wantValidity time.Duration
	}{
		{[]string{"--ca", dir, "--role", "operator", "--name", "alice"}, filepath.Join(dir, "alice"), "alice", pki.RoleOperator,
			365*24*time.Hour + 5*time.Minute},
		{[]string{"--ca", dir, "--role", "admin", "--name", "ci bot", "--out", filepath.Join(tmp, "ci"), "--days", "30"},
			filepath.Join(tmp, "ci"), "ci bot", pki.RoleAdmin, 30*24*time.Hour + 5*time.Minute},
	} {
		out, err := runPKITest(append([]string{"issue"}, tc.args...)...)
		if err != nil {
			t.Fatalf("pki issue %q: %v", tc.args, err)
		}
		certPath, keyPath := tc.prefix+".pem", tc.prefix+"-key.pem"
		cert := readPKICert(t, certPath)
		want := certPath + ": client certificate \"" + tc.cn + "\", role " + string(tc.role) + ", until " + pkiUntil(cert) + "\n" +
			keyPath + ": private key of " + certPath + "\n"
		if out != want {
			t.Errorf("pki issue %q stdout = %q, want %q", tc.args, out, want)
		}
		if role, err := pki.RoleOf(cert); role != tc.role || err != nil {
			t.Errorf("pki issue %q: role %q, %v; want %q", tc.args, role, err, tc.role)
		}
		if cert.Subject.CommonName != tc.cn || cert.NotAfter.Sub(cert.NotBefore) != tc.wantValidity {
			t.Errorf("pki issue %q: CommonName %q, validity %v; want %q, %v", tc.args, cert.Subject.CommonName,
				cert.NotAfter.Sub(cert.NotBefore), tc.cn, tc.wantValidity)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("pki issue %q: certificate does not verify: %v", tc.args, err)
		}
		for path, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
			if st, err := os.Stat(path); err != nil {
				t.Error(err)
			} else if st.Mode() != mode {
				t.Errorf("%s: mode %v, want %v", path, st.Mode(), mode)
			}
		}
	}

	// server certificate
	out, err = runPKITest("issue", "--ca", dir, "--server", "--name", "hv01", "--dns", "hv01.example,mgmt.example", "--ip", "192.0.2.11, 2001:db8::11")
	if err != nil {
		t.Fatalf("pki issue --server: %v", err)
	}
	serverPath, serverKeyPath := filepath.Join(dir, "hv01.pem"), filepath.Join(dir, "hv01-key.pem")
	srv := readPKICert(t, serverPath)
	if want := serverPath + ": server certificate \"hv01\" for hv01, hv01.example, mgmt.example, 192.0.2.11, 2001:db8::11, until " +
		pkiUntil(srv) + "\n" + serverKeyPath + ": private key of " + serverPath + "\n"; out != want {
		t.Errorf("pki issue --server stdout = %q, want %q", out, want)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}; !reflect.DeepEqual(srv.ExtKeyUsage, want) || len(srv.Subject.OrganizationalUnit) != 0 {
		t.Errorf("server certificate: ExtKeyUsage %v, OU %q; want %v and no OU", srv.ExtKeyUsage, srv.Subject.OrganizationalUnit, want)
	}

	// The files work as the TLS configuration of the API and of a client.
	read := func(path string) []byte {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if _, err := pki.ServerTLSConfig(read(serverPath), read(serverKeyPath), read(filepath.Join(dir, pki.CertFile))); err != nil {
		t.Errorf("ServerTLSConfig from the issued files: %v", err)
	}
	if _, err := pki.ClientTLSConfig(read(filepath.Join(dir, "alice.pem")), read(filepath.Join(dir, "alice-key.pem")),
		read(filepath.Join(dir, pki.CertFile)), "hv01.example"); err != nil {
		t.Errorf("ClientTLSConfig from the issued files: %v", err)
	}

	// refusal to overwrite
	before := read(filepath.Join(dir, "alice.pem"))
	_, err = runPKITest("issue", "--ca", dir, "--role", "viewer", "--name", "alice")
	if want := filepath.Join(dir, "alice.pem") + " already exists: refusing to overwrite it"; pkiErr(err) != want || ExitCode(err) != 1 {
		t.Errorf("pki issue over alice.pem: err = %v, want %q (exit 1)", err, want)
	}
	if !bytes.Equal(read(filepath.Join(dir, "alice.pem")), before) {
		t.Errorf("pki issue over alice.pem changed it")
	}
}

func TestPKIUsageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := runPKITest("init", dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "pki: no subcommand given (init or issue)"},
		{[]string{"frob"}, `pki: unknown subcommand "frob"`},
		{[]string{"init"}, pkiInitUsage},
		{[]string{"init", "a", "b"}, pkiInitUsage},
		{[]string{"init", "--no-such-flag", "a"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"issue", "--ca", dir, "--role", "root", "--name", "x"},
			`pki issue: --role: unknown role "root": want viewer, operator or admin`},
		{[]string{"issue", "--ca", dir, "--name", "x"},
			"pki issue: --role viewer, operator or admin is required for a client certificate (or --server)"},
		{[]string{"issue", "--ca", dir, "--server", "--role", "admin", "--name", "x"},
			"pki issue: --role is for client certificates: a server certificate has no role"},
		{[]string{"issue", "--role", "admin", "--name", "x"}, "pki issue: --ca DIR is required\n" + pkiIssueUsage},
		{[]string{"issue", "--ca", dir, "--role", "admin"}, "pki issue: --name is required\n" + pkiIssueUsage},
		{[]string{"issue", "--ca", dir, "--role", "admin", "--name", "x", "extra"},
			"pki issue: unexpected argument \"extra\"\n" + pkiIssueUsage},
		{[]string{"issue", "--ca", dir, "--role", "admin", "--name", "x", "--dns", "x.example"},
			"pki issue: --dns and --ip are for server certificates (--server)"},
		{[]string{"issue", "--ca", dir, "--server", "--name", "x", "--ip", "192.0.2.300"},
			`pki issue: --ip: "192.0.2.300" is not an IP address`},
		{[]string{"issue", "--ca", dir, "--server", "--name", "x", "--dns", "a,,b"},
			`pki issue: --dns "a,,b": empty element`},
		{[]string{"issue", "--ca", dir, "--role", "admin", "--name", "x", "--days", "0"},
			"pki issue: --days 0: want 1 to 36500"},
		{[]string{"issue", "--ca", dir, "--role", "admin", "--name", "../x"},
			`pki issue: --name "../x" is not a file name: give --out PREFIX`},
	} {
		_, err := runPKITest(tc.args...)
		if pkiErr(err) != tc.want || ExitCode(err) != 2 {
			t.Errorf("pki %q: err = %q (exit %d), want %q (exit 2)", tc.args, pkiErr(err), ExitCode(err), tc.want)
		}
	}
	// Mistakes only the CA can find are errors, not usage errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"issue", "--ca", dir, "--role", "admin", "--name", "x", "--days", "36500"},
			`client certificate "x": validity ends `},
		{[]string{"issue", "--ca", filepath.Join(dir, "missing"), "--role", "admin", "--name", "x", "--out", filepath.Join(dir, "x")},
			"CA certificate: open " + filepath.Join(dir, "missing", "ca.pem") + ": no such file or directory"},
	} {
		_, err := runPKITest(tc.args...)
		if !strings.HasPrefix(pkiErr(err), tc.want) || ExitCode(err) != 1 {
			t.Errorf("pki %q: err = %q (exit %d), want %q... (exit 1)", tc.args, pkiErr(err), ExitCode(err), tc.want)
		}
	}
}

// pkiErr is err's message, "" for nil.
func pkiErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
