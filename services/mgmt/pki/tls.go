package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ServerTLSConfig is the management API's TLS configuration: TLS 1.3 only,
// the server certificate and key given, and a client certificate required,
// verified against the CA certificates in clientCAPEM and carrying a valid
// role (RoleOf), or the handshake fails.
func ServerTLSConfig(serverCertPEM, serverKeyPEM, clientCAPEM []byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(serverCertPEM, serverKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	pool, err := certPool(clientCAPEM)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// A certificate from the CA without a valid role is refused in the
		// handshake, so no request is ever served without one.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				return errors.New("no verified client certificate")
			}
			_, err := RoleOf(cs.VerifiedChains[0][0])
			return err
		},
	}, nil
}

// ClientTLSConfig is a management API client's TLS configuration: TLS 1.3
// only, the client certificate and key given, and the server verified against
// the CA certificates in caPEM for serverName (empty: tls.Dial takes it from
// the address dialled).
func ClientTLSConfig(clientCertPEM, clientKeyPEM, caPEM []byte, serverName string) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(clientCertPEM, clientKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pool, err := certPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// certPool parses PEM data that holds one or more certificates and nothing
// else (x509.CertPool.AppendCertsFromPEM skips what it cannot parse).
func certPool(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, errors.New("data after the last PEM block")
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %s, not a CERTIFICATE", n+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return pool, nil
}

// CheckServer checks a server certificate and key as the API would load
// them: the key matches the certificate, and the certificate is valid now
// and chains to the CA for server authentication.
func CheckServer(certPEM, keyPEM, caPEM []byte) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("server certificate and key: %w", err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("CA certificate: no PEM certificate in it")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	return nil
}
