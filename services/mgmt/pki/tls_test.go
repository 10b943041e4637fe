package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake over a pipe; the server then sends "ok" and
// closes, the client reads to the end. role is the client's role as the
// server saw it.
func handshake(t *testing.T, server, client *tls.Config) (role Role, serverErr, clientErr error) {
	t.Helper()
	sc, cc := net.Pipe()
	deadline := time.Now().Add(20 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	type result struct {
		role Role
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s := tls.Server(sc, server)
		var r result
		r.err = s.Handshake()
		if r.err == nil {
			r.role, r.err = RoleOf(s.ConnectionState().PeerCertificates[0])
		}
		if r.err == nil {
			_, r.err = s.Write([]byte("ok"))
		}
		s.Close()
		done <- r
	}()
	c := tls.Client(cc, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		var got []byte
		got, clientErr = io.ReadAll(c)
		if clientErr == nil && string(got) != "ok" {
			t.Errorf("client read %q, want %q", got, "ok")
		}
	}
	c.Close()
	r := <-done
	return r.role, r.err, clientErr
}

func TestHandshake(t *testing.T) {
	ca, _ := newCA(t, "test")
	other, _ := newCA(t, "other")
	serverCert, serverKey, err := ca.IssueServer("hv01", []string{"hv01.example"}, []net.IP{net.ParseIP("192.0.2.11")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg, err := ServerTLSConfig(serverCert, serverKey, ca.CertPEM)
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	// client returns a client configuration with a certificate that from
	// issues, trusting the CA certificate trust.
	client := func(from *CA, role Role, trust []byte, serverName string) *tls.Config {
		t.Helper()
		certPEM, keyPEM, err := from.IssueClient("alice", role, 0)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ClientTLSConfig(certPEM, keyPEM, trust, serverName)
		if err != nil {
			t.Fatalf("ClientTLSConfig: %v", err)
		}
		return cfg
	}
	noCert := client(ca, RoleAdmin, ca.CertPEM, "hv01.example")
	noCert.Certificates = nil
	tls12 := client(ca, RoleAdmin, ca.CertPEM, "hv01.example")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	// A certificate from the CA for client auth but without a role, which
	// IssueClient cannot make.
	roleless, roleKey, err := ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: "mallory"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rolelessCfg, err := ClientTLSConfig(roleless, roleKey, ca.CertPEM, "hv01.example")
	if err != nil {
		t.Fatal(err)
	}
	// Go's client sends a certificate only when its issuer is one the server
	// asks for; one that sends it anyway must be refused too.
	foreign := client(other, RoleAdmin, ca.CertPEM, "hv01.example")
	foreignCert := foreign.Certificates[0]
	foreign.Certificates = nil
	foreign.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert, nil }
	// The server's own certificate offered as a client certificate.
	serverAsClient, err := ClientTLSConfig(serverCert, serverKey, ca.CertPEM, "hv01.example")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name                         string
		client                       *tls.Config
		wantRole                     Role
		wantServerErr, wantClientErr string
	}{
		{name: "admin", client: client(ca, RoleAdmin, ca.CertPEM, "hv01.example"), wantRole: RoleAdmin},
		{name: "viewer by IP", client: client(ca, RoleViewer, ca.CertPEM, "192.0.2.11"), wantRole: RoleViewer},
		{name: "client certificate from another CA", client: client(other, RoleAdmin, ca.CertPEM, "hv01.example"),
			wantServerErr: "tls: client didn't provide a certificate",
			wantClientErr: "remote error: tls: certificate required"},
		{name: "client certificate from another CA, sent anyway", client: foreign,
			wantServerErr: "tls: failed to verify certificate: x509: certificate signed by unknown authority",
			wantClientErr: "remote error: tls: unknown certificate authority"},
		{name: "no client certificate", client: noCert,
			wantServerErr: "tls: client didn't provide a certificate",
			wantClientErr: "remote error: tls: certificate required"},
		{name: "TLS 1.2 client", client: tls12,
			wantServerErr: "tls: client offered only unsupported versions: [303]",
			wantClientErr: "remote error: tls: protocol version not supported"},
		{name: "client certificate without a role", client: rolelessCfg,
			wantServerErr: `certificate "mallory" has no role: want one subject OU hardvisor-role:<role>`,
			wantClientErr: "remote error: tls: bad certificate"},
		{name: "server certificate as client certificate", client: serverAsClient,
			wantServerErr: "tls: failed to verify certificate: x509: certificate specifies an incompatible key usage",
			wantClientErr: "remote error: tls: bad certificate"},
		{name: "client does not trust the server", client: client(ca, RoleAdmin, other.CertPEM, "hv01.example"),
			wantServerErr: "remote error: tls: bad certificate",
			wantClientErr: "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{name: "wrong server name", client: client(ca, RoleAdmin, ca.CertPEM, "hv02.example"),
			wantServerErr: "remote error: tls: bad certificate",
			wantClientErr: "tls: failed to verify certificate: x509: certificate is valid for hv01, hv01.example, not hv02.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			role, serverErr, clientErr := handshake(t, serverCfg, tc.client)
			if role != tc.wantRole || errString(serverErr) != tc.wantServerErr || errString(clientErr) != tc.wantClientErr {
				t.Errorf("handshake: role %q, server error %q, client error %q\nwant role %q, server error %q, client error %q",
					role, errString(serverErr), errString(clientErr), tc.wantRole, tc.wantServerErr, tc.wantClientErr)
			}
		})
	}
}

func TestTLSConfigs(t *testing.T) {
	ca, _ := newCA(t, "test")
	other, _ := newCA(t, "other")
	certPEM, keyPEM, err := ca.IssueServer("hv01", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := other.IssueServer("hv01", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServerTLSConfig(certPEM, keyPEM, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if s.MinVersion != tls.VersionTLS13 || s.MaxVersion != tls.VersionTLS13 || s.ClientAuth != tls.RequireAndVerifyClientCert ||
		s.ClientCAs == nil || len(s.Certificates) != 1 {
		t.Errorf("ServerTLSConfig: min %x max %x client auth %v, %d certificates", s.MinVersion, s.MaxVersion, s.ClientAuth, len(s.Certificates))
	}
	c, err := ClientTLSConfig(certPEM, keyPEM, ca.CertPEM, "hv01")
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 || c.RootCAs == nil || c.ServerName != "hv01" ||
		len(c.Certificates) != 1 || c.InsecureSkipVerify {
		t.Errorf("ClientTLSConfig: min %x max %x server name %q, %d certificates", c.MinVersion, c.MaxVersion, c.ServerName, len(c.Certificates))
	}

	both := append(append([]byte{}, ca.CertPEM...), other.CertPEM...)
	for _, tc := range []struct {
		name                         string
		cert, key, ca                []byte
		wantServerErr, wantClientErr string
	}{
		{"two CAs", certPEM, keyPEM, both, "", ""},
		{"key mismatch", certPEM, otherKey, ca.CertPEM,
			"server certificate: tls: private key does not match public key", "client certificate: tls: private key does not match public key"},
		{"no CA", certPEM, keyPEM, nil, "client CA: no PEM CERTIFICATE block", "CA: no PEM CERTIFICATE block"},
		{"CA not PEM", certPEM, keyPEM, []byte("hello"), "client CA: data after the last PEM block", "CA: data after the last PEM block"},
		{"CA trailing data", certPEM, keyPEM, append(append([]byte{}, ca.CertPEM...), "junk"...),
			"client CA: data after the last PEM block", "CA: data after the last PEM block"},
		{"key as CA", certPEM, keyPEM, keyPEM,
			"client CA: PEM block 1 is a PRIVATE KEY, not a CERTIFICATE", "CA: PEM block 1 is a PRIVATE KEY, not a CERTIFICATE"},
	} {
		_, serr := ServerTLSConfig(tc.cert, tc.key, tc.ca)
		_, cerr := ClientTLSConfig(tc.cert, tc.key, tc.ca, "hv01")
		if errString(serr) != tc.wantServerErr || errString(cerr) != tc.wantClientErr {
			t.Errorf("%s: ServerTLSConfig error %q, ClientTLSConfig error %q; want %q, %q",
				tc.name, errString(serr), errString(cerr), tc.wantServerErr, tc.wantClientErr)
		}
	}
}

func TestCheckServer(t *testing.T) {
	ca, _ := newCA(t, "a")
	other, _ := newCA(t, "b")
	cert, key, err := ca.IssueServer("hv01", nil, []net.IP{net.IPv4(192, 0, 2, 11)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ca.IssueServer("hv02", nil, nil, 0)
	client, clientKey, _ := ca.IssueClient("alice", RoleAdmin, 0)
	for _, tt := range []struct {
		name            string
		cert, key, root []byte
		want            string
	}{
		{"good", cert, key, ca.CertPEM, ""},
		{"key of another certificate", cert, otherKey, ca.CertPEM, "server certificate and key: tls: private key does not match public key"},
		{"another CA", cert, key, other.CertPEM, "server certificate: x509: certificate signed by unknown authority"},
		{"a client certificate", client, clientKey, ca.CertPEM, "server certificate: x509: certificate specifies an incompatible key usage"},
	} {
		err := CheckServer(tt.cert, tt.key, tt.root)
		if (tt.want == "") != (err == nil) || err != nil && !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: CheckServer = %v, want %q", tt.name, err, tt.want)
		}
	}
}
