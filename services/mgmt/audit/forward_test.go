package audit

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMessage(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	line := []byte(`{"seq":7}`)
	for _, c := range []struct {
		r        Record
		facility int
		hostname string
		want     string
	}{
		{Record{Time: at, Action: "services.restart", Allowed: true}, FacilityAuthpriv, "hv01",
			`<85>1 2024-05-01T10:00:00.123456Z hv01 hardvisor-audit - services.restart - {"seq":7}`},
		{Record{Time: at, Action: "guests.stop"}, FacilityAuthpriv, "hv01",
			`<84>1 2024-05-01T10:00:00.123456Z hv01 hardvisor-audit - guests.stop - {"seq":7}`},
		{Record{Time: at, Action: "guests.stop"}, FacilityLocal0, "hv01",
			`<132>1 2024-05-01T10:00:00.123456Z hv01 hardvisor-audit - guests.stop - {"seq":7}`},
		{Record{Action: "guests create\n" + strings.Repeat("x", 40), Allowed: true}, FacilityLocal0, "",
			`<133>1 - - hardvisor-audit - guests_create_xxxxxxxxxxxxxxxxxx - {"seq":7}`},
		{Record{Time: at}, FacilityAuthpriv, "host name",
			`<84>1 2024-05-01T10:00:00.123456Z host_name hardvisor-audit - - - {"seq":7}`},
	} {
		if got := string(message(c.r, line, c.facility, c.hostname)); got != c.want {
			t.Errorf("message:\n got %s\nwant %s", got, c.want)
		}
	}
}

// syslogMsg is an RFC 5424 message taken apart.
type syslogMsg struct {
	pri, timestamp, hostname, app, procID, msgID, sd, msg string
}

func parseMsg(t *testing.T, s string) syslogMsg {
	t.Helper()
	f := strings.SplitN(s, " ", 8)
	if len(f) != 8 || !strings.HasPrefix(f[0], "<") || !strings.HasSuffix(f[0], ">1") {
		t.Fatalf("not an RFC 5424 message: %q", s)
	}
	return syslogMsg{strings.TrimSuffix(strings.TrimPrefix(f[0], "<"), ">1"), f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
}

// readFrame reads one RFC 6587 octet-counted frame.
func readFrame(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	n, err := br.ReadString(' ')
	if err != nil {
		t.Fatalf("read frame length: %v", err)
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
	if err != nil {
		t.Fatalf("frame length %q: %v", n, err)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatalf("read frame of %d bytes: %v", size, err)
	}
	return string(b)
}

// serverConn accepts one connection, with a deadline so a test cannot hang.
func serverConn(t *testing.T, l net.Listener) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// wantMsg is how the Forwarder sends the record on line as hv01.
func wantMsg(t *testing.T, line string) syslogMsg {
	t.Helper()
	r := parseLine(t, line)
	pri := "85"
	if !r.Allowed {
		pri = "84"
	}
	return syslogMsg{pri, r.Time.Format("2006-01-02T15:04:05.000000Z"), "hv01", "hardvisor-audit", "-", r.Action, "-", line}
}

func fastOptions() ForwarderOptions {
	return ForwarderOptions{Hostname: "hv01", MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// TestForwarderTCP sends records from a Log to a real TCP listener, loses
// the server and gets it back.
func TestForwarderTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	fwd, err := NewForwarder("tcp://"+addr, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{Now: clock(), Forward: fwd.Forward})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 2; i <= 3; i++ { // one allowed, one denied
		if _, err := l.Append(request(i)); err != nil {
			t.Fatal(err)
		}
	}
	c, br := serverConn(t, ln)
	lines := fileLines(t, path)
	for i := range 2 {
		if got, want := parseMsg(t, readFrame(t, br)), wantMsg(t, lines[i]); got != want {
			t.Errorf("frame %d:\n got %+v\nwant %+v", i+1, got, want)
		}
	}

	c.Close()
	ln.Close()
	waitFor(t, "the Forwarder sees the connection closed", func() bool { return !fwd.Stats().Connected })
	if _, err := l.Append(request(4)); err != nil {
		t.Fatal(err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, br = serverConn(t, ln)
	defer c.Close()
	if got, want := parseMsg(t, readFrame(t, br)), wantMsg(t, fileLines(t, path)[2]); got != want {
		t.Errorf("frame after reconnecting:\n got %+v\nwant %+v", got, want)
	}
	if err := fwd.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got, want := fwd.Stats(), (ForwarderStats{Sent: 3}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// sealed is the test request i as record seq i and its line.
func sealed(t *testing.T, i int) (Record, []byte) {
	t.Helper()
	r := request(i)
	r.Seq, r.Time, r.Prev = uint64(i), base.Add(time.Duration(i)*time.Second), Genesis
	b, err := seal(&r)
	if err != nil {
		t.Fatal(err)
	}
	return r, b[:len(b)-1]
}

// freeAddr is a TCP address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestForwarderQueueFull(t *testing.T) {
	addr := freeAddr(t)
	opts := fastOptions()
	opts.QueueSize = 3
	fwd, err := NewForwarder("tcp://"+addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i := 1; i <= 5; i++ {
		r, line := sealed(t, i)
		fwd.Forward(r, line)
		lines = append(lines, string(line))
	}
	if got, want := fwd.Stats(), (ForwarderStats{Queued: 3, Dropped: 2}); got != want {
		t.Errorf("Stats with the server down = %+v, want %+v", got, want)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, br := serverConn(t, ln)
	defer c.Close()
	for _, line := range lines[2:] { // the oldest two were dropped
		if got := parseMsg(t, readFrame(t, br)).msg; got != line {
			t.Errorf("MSG:\n got %s\nwant %s", got, line)
		}
	}
	if err := fwd.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	r, line := sealed(t, 6)
	fwd.Forward(r, line)
	if got, want := fwd.Stats(), (ForwarderStats{Sent: 3, Dropped: 3}); got != want {
		t.Errorf("Stats after Close and one more Forward = %+v, want %+v", got, want)
	}
}

func TestForwarderCloseGivesUp(t *testing.T) {
	addr := freeAddr(t)
	opts := fastOptions()
	opts.FlushTimeout = 50 * time.Millisecond
	fwd, err := NewForwarder("tcp://"+addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	fwd.Forward(sealed(t, 1))
	err = fwd.Close()
	if want := "syslog tcp://" + addr + ": 1 audit message(s) not delivered within 50ms"; err == nil || err.Error() != want {
		t.Errorf("Close: %v, want %s", err, want)
	}
}

func TestForwarderTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	opts := fastOptions()
	opts.TLSConfig = &tls.Config{RootCAs: roots}
	fwd, err := NewForwarder("tls://"+ln.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	r, line := sealed(t, 3)
	fwd.Forward(r, line)
	c, br := serverConn(t, ln)
	defer c.Close()
	if got, want := parseMsg(t, readFrame(t, br)), wantMsg(t, string(line)); got != want {
		t.Errorf("frame over TLS:\n got %+v\nwant %+v", got, want)
	}
	if err := fwd.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestForwarderUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fwd, err := NewForwarder("udp://"+pc.LocalAddr().String(), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, line := sealed(t, 1)
	fwd.Forward(r, line)
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64<<10)
	n, _, err := pc.ReadFrom(b)
	if err != nil {
		t.Fatal(err)
	}
	// One datagram, one message: no octet count.
	if got, want := string(b[:n]), string(message(r, line, FacilityAuthpriv, "hv01")); got != want {
		t.Errorf("datagram:\n got %s\nwant %s", got, want)
	}
	if err := fwd.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestNewForwarderErrors(t *testing.T) {
	for _, c := range []struct {
		url  string
		opts ForwarderOptions
		want string
	}{
		{"https://logs.example", ForwarderOptions{}, `syslog URL "https://logs.example": want tcp://, tls:// or udp://host[:port]`},
		{"tcp://logs.example/x", ForwarderOptions{}, `syslog URL "tcp://logs.example/x": want tcp://, tls:// or udp://host[:port]`},
		{"tcp://:514", ForwarderOptions{}, `syslog URL "tcp://:514": want tcp://, tls:// or udp://host[:port]`},
		{"tcp://logs.example:0", ForwarderOptions{}, `syslog URL "tcp://logs.example:0": port 0: want 1 to 65535`},
		{"tcp://logs.example", ForwarderOptions{TLSConfig: &tls.Config{}}, "syslog tcp://logs.example: a TLS config is given but the URL is not tls://"},
		{"tls://logs.example", ForwarderOptions{Facility: 24}, "syslog tls://logs.example: facility 24: want 1 to 23"},
	} {
		f, err := NewForwarder(c.url, c.opts)
		if err == nil {
			f.Close()
		}
		if got := errString(err); got != c.want {
			t.Errorf("NewForwarder(%q):\n got %s\nwant %s", c.url, got, c.want)
		}
	}
}

func TestParseSyslogURL(t *testing.T) {
	for url, want := range map[string]string{
		"tcp://logs.example":        "tcp logs.example 601",
		"tls://logs.example":        "tls logs.example 6514",
		"udp://logs.example":        "udp logs.example 514",
		"tcp://logs.example:6514":   "tcp logs.example 6514",
		"tls://[2001:db8::53]:6514": "tls 2001:db8::53 6514",
		"udp://192.0.2.53:10514":    "udp 192.0.2.53 10514",
	} {
		network, host, port, err := parseSyslogURL(url)
		if got := fmt.Sprint(network, " ", host, " ", port); err != nil || got != want {
			t.Errorf("parseSyslogURL(%q) = %s, %v; want %s", url, got, err, want)
		}
	}
}
