package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

// newCA makes a CA named "hardvisor CA <name>" in a temporary directory.
func newCA(t *testing.T, name string) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Init(dir, InitOptions{Name: name})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return ca, dir
}

func mustParseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}

// summary is what a test checks of a certificate, all of it at once.
type summary struct {
	CN          string
	OU          []string
	DNS         []string
	IPs         []string
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	IsCA        bool
	MaxPathLen0 bool
	Validity    time.Duration // NotAfter - NotBefore
}

func summarize(c *x509.Certificate) summary {
	s := summary{CN: c.Subject.CommonName, OU: c.Subject.OrganizationalUnit, DNS: c.DNSNames,
		KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage, IsCA: c.IsCA,
		MaxPathLen0: c.MaxPathLen == 0 && c.MaxPathLenZero, Validity: c.NotAfter.Sub(c.NotBefore)}
	for _, ip := range c.IPAddresses {
		s.IPs = append(s.IPs, ip.String())
	}
	return s
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode()
}

func TestInitLoad(t *testing.T) {
	for _, tc := range []struct {
		opts InitOptions
		want summary
	}{
		{InitOptions{}, summary{CN: "hardvisor CA", KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			IsCA: true, MaxPathLen0: true, Validity: 3650*day + 5*time.Minute}},
		{InitOptions{Name: "lab rack 3", Validity: 30 * day}, summary{CN: "hardvisor CA lab rack 3",
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, IsCA: true, MaxPathLen0: true, Validity: 30*day + 5*time.Minute}},
	} {
		dir := filepath.Join(t.TempDir(), "pki")
		ca, err := Init(dir, tc.opts)
		if err != nil {
			t.Fatalf("Init(%+v): %v", tc.opts, err)
		}
		if got := summarize(ca.Cert); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Init(%+v) certificate = %+v, want %+v", tc.opts, got, tc.want)
		}
		if err := ca.Cert.CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("CA certificate is not self-signed: %v", err)
		}
		if n := ca.Cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
			t.Errorf("serial %v: want 1 to 128 bits", n)
		}
		for path, want := range map[string]os.FileMode{
			dir:                          os.ModeDir | 0o700,
			filepath.Join(dir, CertFile): 0o644,
			filepath.Join(dir, KeyFile):  0o600,
		} {
			if got := fileMode(t, path); got != want {
				t.Errorf("%s: mode %v, want %v", path, got, want)
			}
		}
		keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		b, rest := pem.Decode(keyPEM)
		if b == nil || b.Type != "PRIVATE KEY" || len(rest) != 0 {
			t.Fatalf("%s: want exactly one PEM PRIVATE KEY block", KeyFile)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if ek, ok := k.(*ecdsa.PrivateKey); err != nil || !ok || ek.Curve != elliptic.P256() {
			t.Errorf("%s: key %T (%v), want an ECDSA P-256 PKCS#8 key", KeyFile, k, err)
		}

		loaded, err := Load(dir)
		if err != nil {
			t.Fatalf("Load after Init: %v", err)
		}
		if !bytes.Equal(loaded.Cert.Raw, ca.Cert.Raw) || !bytes.Equal(loaded.CertPEM, ca.CertPEM) {
			t.Errorf("Load returned another certificate than Init wrote")
		}
		// The loaded key signs certificates that the CA certificate verifies.
		certPEM, _, err := loaded.IssueClient("alice", RoleViewer, day)
		if err != nil {
			t.Fatalf("IssueClient from the loaded CA: %v", err)
		}
		if err := mustParseCert(t, certPEM).CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("certificate from the loaded CA: %v", err)
		}
	}
}

func TestInitRefusesExisting(t *testing.T) {
	for _, existing := range []string{CertFile, KeyFile} {
		dir := t.TempDir()
		old := filepath.Join(dir, existing)
		if err := os.WriteFile(old, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Init(dir, InitOptions{})
		if want := old + " already exists: refusing to overwrite it"; errString(err) != want {
			t.Errorf("Init with %s present: error %q, want %q", existing, errString(err), want)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("Init with %s present wrote files: %v", existing, entries)
		}
		if data, _ := os.ReadFile(old); string(data) != "old\n" {
			t.Errorf("Init with %s present changed it to %q", existing, data)
		}
	}
}

func TestInitErrors(t *testing.T) {
	for _, tc := range []struct {
		opts    InitOptions
		wantErr string
	}{
		{InitOptions{Name: strings.Repeat("x", 52)}, `CA name: name "hardvisor CA ` + strings.Repeat("x", 52) + `" is 65 characters long: at most 64`},
		{InitOptions{Name: "lab\n"}, `CA name: name "hardvisor CA lab\n" starts or ends with white space`},
		{InitOptions{Name: "l\x00ab"}, `CA name: name "hardvisor CA l\x00ab" has the unprintable character U+0000`},
		{InitOptions{Validity: -day}, `CA: validity -24h0m0s: want a positive duration of at least 1s`},
	} {
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := Init(dir, tc.opts)
		if errString(err) != tc.wantErr {
			t.Errorf("Init(%+v) error %q, want %q", tc.opts, errString(err), tc.wantErr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Init(%+v) failed but created %s", tc.opts, dir)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	other, otherDir := newCA(t, "other")
	leafPEM, leafKeyPEM, err := other.IssueClient("alice", RoleAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(otherDir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(otherKey)
	k, _ := x509.ParsePKCS8PrivateKey(b.Bytes)
	sec1, _ := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))

	write := func(file string, data []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string // DIR stands for the CA directory
	}{
		{"no directory", func(t *testing.T, dir string) { os.RemoveAll(dir) },
			"CA certificate: open DIR/ca.pem: no such file or directory"},
		{"no key", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, KeyFile)) },
			"CA key: open DIR/ca-key.pem: no such file or directory"},
		{"key of another CA", write(KeyFile, otherKey),
			"DIR/ca-key.pem does not match the certificate in DIR/ca.pem"},
		{"certificate not PEM", write(CertFile, []byte("hello\n")),
			"DIR/ca.pem: no PEM CERTIFICATE block"},
		{"key not PKCS#8", write(KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})),
			"DIR/ca-key.pem: no PEM PRIVATE KEY block (want an unencrypted PKCS#8 key)"},
		{"not a CA", func(t *testing.T, dir string) {
			write(CertFile, leafPEM)(t, dir)
			write(KeyFile, leafKeyPEM)(t, dir)
		}, `DIR/ca.pem: certificate "alice" is not a CA certificate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := newCA(t, "test")
			tc.setup(t, dir)
			_, err := Load(dir)
			if want := strings.ReplaceAll(tc.wantErr, "DIR", dir); errString(err) != want {
				t.Errorf("Load error %q, want %q", errString(err), want)
			}
		})
	}
}

func TestIssueClient(t *testing.T) {
	ca, _ := newCA(t, "test")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, tc := range []struct {
		name     string
		role     Role
		validity time.Duration
		want     summary
	}{
		{"alice", RoleOperator, 0, summary{CN: "alice", OU: []string{"hardvisor-role:operator"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			Validity: 365*day + 5*time.Minute}},
		{"ci-bot", RoleAdmin, 7 * day, summary{CN: "ci-bot", OU: []string{"hardvisor-role:admin"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			Validity: 7*day + 5*time.Minute}},
		{"Jörg Müller (NOC)", RoleViewer, 0, summary{CN: "Jörg Müller (NOC)", OU: []string{"hardvisor-role:viewer"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			Validity: 365*day + 5*time.Minute}},
		{strings.Repeat("n", 64), RoleViewer, 0, summary{CN: strings.Repeat("n", 64), OU: []string{"hardvisor-role:viewer"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			Validity: 365*day + 5*time.Minute}},
	} {
		certPEM, keyPEM, err := ca.IssueClient(tc.name, tc.role, tc.validity)
		if err != nil {
			t.Fatalf("IssueClient(%q, %q): %v", tc.name, tc.role, err)
		}
		cert := mustParseCert(t, certPEM)
		if got := summarize(cert); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("IssueClient(%q, %q) = %+v, want %+v", tc.name, tc.role, got, tc.want)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate %q does not verify for client auth: %v", tc.name, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
			t.Errorf("client certificate %q verifies for server auth", tc.name)
		}
		if got, err := RoleOf(cert); got != tc.role || err != nil {
			t.Errorf("RoleOf(client certificate %q) = %q, %v; want %q", tc.name, got, err, tc.role)
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Errorf("client key does not match its certificate: %v", err)
		}
		if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
			t.Errorf("client key is not a PEM PRIVATE KEY block")
		}
	}
}

func TestIssueServer(t *testing.T) {
	ca, _ := newCA(t, "test")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	base := summary{KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		Validity: 365*day + 5*time.Minute}
	with := func(cn string, dns, ips []string) summary {
		s := base
		s.CN, s.DNS, s.IPs = cn, dns, ips
		return s
	}
	for _, tc := range []struct {
		name string
		dns  []string
		ips  []net.IP
		want summary
	}{
		{"hv01.example", nil, nil, with("hv01.example", []string{"hv01.example"}, nil)},
		{"hv01", []string{"hv01.example", "HV01", "mgmt.example", "hv01.example"},
			[]net.IP{net.ParseIP("192.0.2.11"), net.ParseIP("2001:db8::11"), net.IPv4(192, 0, 2, 11).To4()},
			with("hv01", []string{"hv01", "hv01.example", "mgmt.example"}, []string{"192.0.2.11", "2001:db8::11"})},
		{"192.0.2.11", nil, nil, with("192.0.2.11", nil, []string{"192.0.2.11"})},
		{"hv01 management API", []string{"*.hv.example"}, nil, with("hv01 management API", []string{"*.hv.example"}, nil)},
	} {
		certPEM, keyPEM, err := ca.IssueServer(tc.name, tc.dns, tc.ips, 0)
		if err != nil {
			t.Fatalf("IssueServer(%q, %q, %v): %v", tc.name, tc.dns, tc.ips, err)
		}
		cert := mustParseCert(t, certPEM)
		if got := summarize(cert); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("IssueServer(%q, %q, %v) = %+v, want %+v", tc.name, tc.dns, tc.ips, got, tc.want)
		}
		host := append(tc.want.DNS, tc.want.IPs...)[0]
		if host == "*.hv.example" {
			host = "a.hv.example"
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server certificate %q does not verify for %s: %v", tc.name, host, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
			t.Errorf("server certificate %q verifies for client auth", tc.name)
		}
		if _, err := RoleOf(cert); err == nil {
			t.Errorf("server certificate %q has a role", tc.name)
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Errorf("server key does not match its certificate: %v", err)
		}
	}
}

func TestIssueErrors(t *testing.T) {
	ca, _ := newCA(t, "test")
	long := strings.Repeat("x", 65)
	for _, tc := range []struct {
		what    string
		issue   func() error
		wantErr string
	}{
		{"empty name", func() error { _, _, err := ca.IssueClient("", RoleViewer, 0); return err },
			"client certificate: name is empty"},
		{"long name", func() error { _, _, err := ca.IssueClient(long, RoleViewer, 0); return err },
			`client certificate: name "` + long + `" is 65 characters long: at most 64`},
		{"tab in name", func() error { _, _, err := ca.IssueClient("a\tb", RoleViewer, 0); return err },
			`client certificate: name "a\tb" has the unprintable character U+0009`},
		{"leading space", func() error { _, _, err := ca.IssueClient(" alice", RoleViewer, 0); return err },
			`client certificate: name " alice" starts or ends with white space`},
		{"invalid UTF-8", func() error { _, _, err := ca.IssueClient("a\xffb", RoleViewer, 0); return err },
			`client certificate: name "a\xffb" is not valid UTF-8`},
		{"unknown role", func() error { _, _, err := ca.IssueClient("alice", "root", 0); return err },
			`client certificate "alice": unknown role "root": want viewer, operator or admin`},
		{"negative validity", func() error { _, _, err := ca.IssueClient("alice", RoleViewer, -time.Hour); return err },
			`client certificate "alice": validity -1h0m0s: want a positive duration of at least 1s`},
		{"server name empty", func() error { _, _, err := ca.IssueServer("", nil, nil, 0); return err },
			"server certificate: name is empty"},
		{"bad DNS character", func() error { _, _, err := ca.IssueServer("hv01", []string{"bad_name.example"}, nil, 0); return err },
			`server certificate "hv01": DNS name "bad_name.example": label "bad_name": '_' is not a letter, digit or hyphen`},
		{"DNS hyphen", func() error { _, _, err := ca.IssueServer("hv01", []string{"-a.example"}, nil, 0); return err },
			`server certificate "hv01": DNS name "-a.example": label "-a" starts or ends with a hyphen`},
		{"DNS empty label", func() error { _, _, err := ca.IssueServer("hv01", []string{"a..example"}, nil, 0); return err },
			`server certificate "hv01": DNS name "a..example": label "": want 1 to 63 characters`},
		{"DNS empty", func() error { _, _, err := ca.IssueServer("hv01", []string{""}, nil, 0); return err },
			`server certificate "hv01": DNS name "": want 1 to 253 characters`},
		{"IP as DNS name", func() error { _, _, err := ca.IssueServer("hv01", []string{"192.0.2.1"}, nil, 0); return err },
			`server certificate "hv01": DNS name "192.0.2.1" is an IP address: give it as an IP address`},
		{"bad IP", func() error { _, _, err := ca.IssueServer("hv01", nil, []net.IP{{1, 2, 3}}, 0); return err },
			`server certificate "hv01": IP address ?010203: want 4 or 16 bytes, have 3`},
		{"no SAN", func() error { _, _, err := ca.IssueServer("hv01 API", nil, nil, 0); return err },
			`server certificate "hv01 API": no DNS name or IP address for clients to check: give at least one`},
	} {
		if err := tc.issue(); errString(err) != tc.wantErr {
			t.Errorf("%s: error %q, want %q", tc.what, errString(err), tc.wantErr)
		}
	}
}

func TestIssueBeyondCA(t *testing.T) {
	ca, err := Init(t.TempDir(), InitOptions{Validity: 2 * day})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ca.IssueClient("alice", RoleViewer, 0)
	prefix, suffix := `client certificate "alice": validity ends `, ", after the CA certificate expires on "+ca.Cert.NotAfter.Format(time.DateOnly)
	if s := errString(err); !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
		t.Errorf("IssueClient for longer than the CA: error %q, want %q...%q", s, prefix, suffix)
	}
	if _, _, err := ca.IssueClient("alice", RoleViewer, day); err != nil {
		t.Errorf("IssueClient within the CA's validity: %v", err)
	}
}

func TestWriteFilesRefuses(t *testing.T) {
	for _, existing := range []string{"c.pem", "c-key.pem"} {
		dir := t.TempDir()
		certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c-key.pem")
		os.WriteFile(filepath.Join(dir, existing), []byte("old\n"), 0o644)
		err := WriteFiles(certPath, keyPath, []byte("cert\n"), []byte("key\n"))
		if want := filepath.Join(dir, existing) + " already exists: refusing to overwrite it"; errString(err) != want {
			t.Errorf("WriteFiles with %s present: error %q, want %q", existing, errString(err), want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("WriteFiles with %s present wrote files: %v", existing, entries)
		}
	}
}
