package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Files of a CA directory.
const (
	// CertFile is the CA certificate (mode 0644): what servers and clients trust.
	CertFile = "ca.pem"
	// KeyFile is the CA private key, PKCS#8 PEM (mode 0600).
	KeyFile = "ca-key.pem"
)

// Validity defaults.
const (
	// DefaultCAValidity is how long a CA certificate is valid unless
	// InitOptions.Validity says otherwise: 10 years (3650 days).
	DefaultCAValidity = 3650 * 24 * time.Hour
	// DefaultValidity is how long an issued certificate is valid when the
	// validity given is 0: 1 year (365 days).
	DefaultValidity = 365 * 24 * time.Hour
)

// MaxNameLen is the longest CommonName, in characters (X.520's upper bound).
const MaxNameLen = 64

// caCommonName starts the CA certificate's CommonName.
const caCommonName = "hardvisor CA"

// clockSkew backdates NotBefore so that a certificate is usable at once on a
// host whose clock is a little behind the one that issued it.
const clockSkew = 5 * time.Minute

// CA is a loaded certificate authority: its certificate and signing key.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// CertPEM is Cert in PEM, as stored in ca.pem.
	CertPEM []byte

	key crypto.Signer
}

// InitOptions are the optional settings of a new CA.
type InitOptions struct {
	// Name is appended to the CA's CommonName, "hardvisor CA <Name>", to tell
	// installations apart. Empty: the CommonName is "hardvisor CA".
	Name string
	// Validity is how long the CA certificate is valid. Zero: DefaultCAValidity.
	Validity time.Duration
}

// Init creates a new CA in dir (created with mode 0700 if missing): a
// self-signed ECDSA P-256 certificate in ca.pem (0644) and its PKCS#8 key in
// ca-key.pem (0600). The CA may sign leaf certificates only (MaxPathLen 0).
// Init refuses, writing nothing, if either file already exists.
func Init(dir string, opts InitOptions) (*CA, error) {
	cn := caCommonName
	if opts.Name != "" {
		cn += " " + opts.Name
	}
	if err := checkName(cn); err != nil {
		return nil, fmt.Errorf("CA name: %w", err)
	}
	validity, err := validityOr(opts.Validity, DefaultCAValidity)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA directory: %w", err)
	}
	if err := WriteFiles(certPath, keyPath, certPEM, keyPEM); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// Load reads the CA in dir and checks that ca.pem is a CA certificate that
// may sign certificates and that ca-key.pem is its private key.
func Load(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s: certificate %q is not a CA certificate", certPath, cert.Subject.CommonName)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: CA certificate %q lacks the certSign key usage", certPath, cert.Subject.CommonName)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match the certificate in %s", keyPath, certPath)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// IssueClient signs a client certificate for the person or tool name (its
// CommonName) with role, valid for validity (0: DefaultValidity), and returns
// it and its new ECDSA P-256 key (PKCS#8), both PEM.
func (ca *CA) IssueClient(name string, role Role, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := checkName(name); err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, nil, fmt.Errorf("client certificate %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{RoleOUPrefix + string(role)}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = ca.issue(tmpl, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("client certificate %q: %w", name, err)
	}
	return certPEM, keyPEM, nil
}

// IssueServer signs a server certificate with CommonName name for the DNS
// names and IP addresses given, valid for validity (0: DefaultValidity), and
// returns it and its new ECDSA P-256 key (PKCS#8), both PEM. TLS clients check
// only the subject alternative names, so name itself is added to them when it
// is a DNS name or an IP address; the certificate must name at least one.
func (ca *CA) IssueServer(name string, dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := checkName(name); err != nil {
		return nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	dns, addrs, err := serverSANs(name, dnsNames, ips)
	if err != nil {
		return nil, nil, fmt.Errorf("server certificate %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		DNSNames:    dns,
		IPAddresses: addrs,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certPEM, keyPEM, err = ca.issue(tmpl, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("server certificate %q: %w", name, err)
	}
	return certPEM, keyPEM, nil
}

// issue completes tmpl (serial, validity, constraints), signs it with a new
// key and returns both PEM.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	validity, err = validityOr(validity, DefaultValidity)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	if !now.Before(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("the CA certificate expired on %s", ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	if end := now.Add(validity); end.After(ca.Cert.NotAfter) {
		// A chain is valid only while every certificate in it is: say so
		// rather than hand out a certificate that stops working early.
		return nil, nil, fmt.Errorf("validity ends %s, after the CA certificate expires on %s",
			end.Format(time.DateOnly), ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// WriteFiles writes a certificate (mode 0644) and its private key (mode
// 0600). It refuses, writing nothing, if either file exists, and removes
// what it wrote when it fails halfway.
func WriteFiles(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	// The key first: a certificate without its key is useless, a key
	// without its certificate is removed below.
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// refuseExisting fails if any of paths exists.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return fmt.Errorf("%s already exists: refusing to overwrite it", p)
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writeNew creates path, which must not exist, with exactly mode (whatever
// the umask) and data, synced to disk.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// checkName checks a CommonName: non-empty, printable, no surrounding
// spaces, at most MaxNameLen characters.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("name is empty")
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	case utf8.RuneCountInString(name) > MaxNameLen:
		return fmt.Errorf("name %q is %d characters long: at most %d", name, utf8.RuneCountInString(name), MaxNameLen)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("name %q starts or ends with white space", name)
	}
	for _, c := range name {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("name %q has the unprintable character %U", name, c)
		}
	}
	return nil
}

// validityOr returns v, or def when v is 0.
func validityOr(v, def time.Duration) (time.Duration, error) {
	switch {
	case v == 0:
		return def, nil
	case v < time.Second:
		return 0, fmt.Errorf("validity %s: want a positive duration of at least 1s", v)
	}
	return v, nil
}

// serialLimit bounds serials to 128 bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// newSerial returns a random serial number in [1, 2^128).
func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// encodeKey returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertificatePEM parses the first PEM block of data, which must be a
// certificate.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(b.Bytes)
}

// parseKeyPEM parses a PKCS#8 "PRIVATE KEY" PEM block.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block (want an unencrypted PKCS#8 key)")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", k)
	}
	return s, nil
}

// serverSANs returns the subject alternative names of a server certificate:
// dnsNames and ips, checked and without duplicates, plus name when it is a
// DNS name or an IP address.
func serverSANs(name string, dnsNames []string, ips []net.IP) ([]string, []net.IP, error) {
	var dns []string
	var addrs []net.IP
	addIP := func(ip net.IP) {
		if !slices.ContainsFunc(addrs, ip.Equal) {
			addrs = append(addrs, ip)
		}
	}
	if ip := net.ParseIP(name); ip != nil {
		addIP(ip)
	} else if checkDNSName(name) == nil {
		dns = append(dns, name)
	}
	for _, d := range dnsNames {
		if err := checkDNSName(d); err != nil {
			return nil, nil, err
		}
		if !slices.ContainsFunc(dns, func(s string) bool { return strings.EqualFold(s, d) }) {
			dns = append(dns, d)
		}
	}
	for _, ip := range ips {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, nil, fmt.Errorf("IP address %v: want 4 or 16 bytes, have %d", ip, len(ip))
		}
		addIP(ip)
	}
	if len(dns) == 0 && len(addrs) == 0 {
		return nil, nil, errors.New("no DNS name or IP address for clients to check: give at least one")
	}
	return dns, addrs, nil
}

// checkDNSName checks a host name for a certificate: dot-separated labels of
// letters, digits and inner hyphens, 1-63 characters each, 253 in all; the
// first label may be the wildcard "*".
func checkDNSName(name string) error {
	if net.ParseIP(name) != nil {
		return fmt.Errorf("DNS name %q is an IP address: give it as an IP address", name)
	}
	if name == "" || len(name) > 253 {
		return fmt.Errorf("DNS name %q: want 1 to 253 characters", name)
	}
	for i, label := range strings.Split(name, ".") {
		if i == 0 && label == "*" && name != "*" {
			continue
		}
		if err := checkLabel(label); err != nil {
			return fmt.Errorf("DNS name %q: %w", name, err)
		}
	}
	return nil
}

// checkLabel checks one label of a DNS name.
func checkLabel(label string) error {
	if label == "" || len(label) > 63 {
		return fmt.Errorf("label %q: want 1 to 63 characters", label)
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for _, c := range label {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q: %q is not a letter, digit or hyphen", label, c)
		}
	}
	return nil
}
