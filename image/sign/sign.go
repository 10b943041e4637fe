// Package sign signs EFI binaries (systemd-boot, the UKI) for UEFI Secure Boot
// with an Authenticode signature made by sbsigntool's sbsign, using the
// user's db key and certificate. Load checks the pair before a build writes
// anything.
package sign

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Signer is a checked key and certificate pair.
type Signer struct {
	// Key and Cert are the PEM files.
	Key, Cert string
	// Subject is the certificate's subject (RFC 2253 form).
	Subject string
	// SHA256 is the SHA-256 fingerprint of the DER certificate, lower-case hex.
	SHA256 string

	sbsign string
}

// Load reads and checks a signing key and certificate: both files exist, the
// certificate parses, the key is an unencrypted PEM private key that matches
// it, the key is RSA (what UEFI firmware verifies) and sbsign is installed.
func Load(keyPath, certPath string) (*Signer, error) {
	switch {
	case keyPath == "" && certPath == "":
		return nil, errors.New("signing needs a key and a certificate")
	case keyPath == "":
		return nil, fmt.Errorf("signing certificate %s given without a key (--sign-key)", certPath)
	case certPath == "":
		return nil, fmt.Errorf("signing key %s given without a certificate (--sign-cert)", keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	if b, _ := pem.Decode(keyPEM); b != nil && (b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "") {
		return nil, fmt.Errorf("signing key %s is encrypted: sbsign cannot prompt in a build; decrypt it to a protected file (openssl pkey -in %s -out KEY)", keyPath, keyPath)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("signing certificate %s: no PEM CERTIFICATE block", certPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %s: %w", certPath, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("signing key %s does not match certificate %s: %w", keyPath, certPath, err)
	}
	if _, ok := pair.PrivateKey.(*rsa.PrivateKey); !ok {
		return nil, fmt.Errorf("signing key %s is %T: UEFI Secure Boot verifies RSA signatures only", keyPath, pair.PrivateKey)
	}
	sbsign, err := exec.LookPath("sbsign")
	if err != nil {
		return nil, errors.New("sbsign not found: apt-get install sbsigntool")
	}
	sum := sha256.Sum256(cert.Raw)
	return &Signer{Key: keyPath, Cert: certPath, Subject: cert.Subject.String(), SHA256: hex.EncodeToString(sum[:]), sbsign: sbsign}, nil
}

// Sign writes an Authenticode-signed copy of the EFI binary in to out.
func (s *Signer) Sign(in, out string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(s.sbsign, "--key", s.Key, "--cert", s.Cert, "--output", out, in)
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	cmd.Stdin = nil // never prompt for a pass phrase
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sbsign %s: %w: %s", in, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
