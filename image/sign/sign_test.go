package sign

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pair writes a self-signed certificate for key and the key, PEM-encoded.
func pair(t *testing.T, dir, name string, key any, pub any) (keyPath, certPath string, der []byte) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name, Organization: []string{"hv test"}},
		NotBefore: time.Unix(0, 0), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, certPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return keyPath, certPath, der
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key1, cert1, der1 := pair(t, dir, "one", k1, &k1.PublicKey)
	key2, _, _ := pair(t, dir, "two", k2, &k2.PublicKey)
	keyEC, certEC, _ := pair(t, dir, "ec", ec, &ec.PublicKey)
	enc := filepath.Join(dir, "enc.key")
	os.WriteFile(enc, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600)

	if _, err := os.Stat("/usr/bin/sbsign"); err == nil {
		s, err := Load(key1, cert1)
		if err != nil {
			t.Fatalf("matching pair: %v", err)
		}
		sum := sha256.Sum256(der1)
		if s.SHA256 != hex.EncodeToString(sum[:]) || s.Subject != "CN=one,O=hv test" {
			t.Errorf("signer = %+v", s)
		}
	}
	for _, tc := range []struct{ key, cert, want string }{
		{key2, cert1, "does not match"},
		{filepath.Join(dir, "missing.key"), cert1, "no such file"},
		{key1, filepath.Join(dir, "missing.pem"), "no such file"},
		{key1, "", "without a certificate"},
		{"", cert1, "without a key"},
		{enc, cert1, "encrypted"},
		{keyEC, certEC, "RSA"},
		{key1, key1, "no PEM CERTIFICATE"},
	} {
		_, err := Load(tc.key, tc.cert)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%s, %s) = %v, want an error containing %q", filepath.Base(tc.key), filepath.Base(tc.cert), err, tc.want)
		}
	}
}
