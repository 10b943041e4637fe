package build

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/image/cache"
)

// TestBadSigningInputsWriteNothing: a key that does not match its
// certificate, or a missing key or certificate, fails the build before the
// cache or the output directory is touched.
func TestBadSigningInputsWriteNothing(t *testing.T) {
	const snakeoil = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	if _, err := os.Stat(snakeoil); err != nil {
		t.Skip("ovmf not installed")
	}
	dir := t.TempDir()
	other := filepath.Join(dir, "other.key")
	// A valid RSA key that is not the certificate's.
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	for _, tc := range []struct{ key, cert, want string }{
		{other, snakeoil, "does not match"},
		{filepath.Join(dir, "missing.key"), snakeoil, "missing.key"},
		{other, "", "without a certificate"},
		{"", filepath.Join(dir, "missing.pem"), "without a key"},
	} {
		out, c := filepath.Join(dir, "out"), cache.Cache{Root: filepath.Join(dir, "cache")}
		_, err := Run(Options{OutDir: out, Cache: c, SignKey: tc.key, SignCert: tc.cert})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("key %q cert %q: %v, want an error containing %q", tc.key, tc.cert, err, tc.want)
		}
		for _, p := range []string{out, c.Root} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("key %q cert %q: %s was created", tc.key, tc.cert, p)
			}
		}
	}
}
