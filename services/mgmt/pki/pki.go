// Package pki is the installation's certificate authority for the management
// API, which speaks HTTPS with mutual TLS 1.3 only.
//
// Init creates the CA in a directory (ca.pem, and ca-key.pem readable by its
// owner only); Load reads it back; IssueClient and IssueServer sign ECDSA P-256
// leaf certificates with it. ServerTLSConfig and ClientTLSConfig build the
// matching tls.Config values for mgmtd and `hardvisor ctl`.
//
// # Roles
//
// A client's role is part of its certificate, so a role cannot be changed
// without the CA key. The role is encoded in the certificate's Subject as
// exactly one OrganizationalUnit entry
//
//	OU=hardvisor-role:<role>
//
// where <role> is viewer, operator or admin (see RoleOUPrefix). Other OU
// entries are ignored; a client certificate with no such entry, more than one,
// or an unknown role has no role and is refused (RoleOf). Server certificates
// never carry a role entry. Roles are ordered: viewer < operator < admin, and a
// role allows everything a lower one does (Role.Allows).
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Role is what a management API client may do.
type Role string

const (
	// RoleViewer reads status.
	RoleViewer Role = "viewer"
	// RoleOperator also acts on services and guests.
	RoleOperator Role = "operator"
	// RoleAdmin may do everything, including updates and power.
	RoleAdmin Role = "admin"
)

// Roles lists the valid roles from least to most privileged.
var Roles = []Role{RoleViewer, RoleOperator, RoleAdmin}

// RoleOUPrefix starts the one Subject OrganizationalUnit entry of a client
// certificate that names its role: "hardvisor-role:admin".
const RoleOUPrefix = "hardvisor-role:"

// rank orders the roles; an unknown role has rank 0 and allows nothing.
func (r Role) rank() int {
	for i, v := range Roles {
		if r == v {
			return i + 1
		}
	}
	return 0
}

// Allows reports whether a client with role r may do what needs role need:
// r is a known role at least as privileged as need.
func (r Role) Allows(need Role) bool {
	return r.rank() != 0 && need.rank() != 0 && r.rank() >= need.rank()
}

// String returns the role's name.
func (r Role) String() string { return string(r) }

// validRoles is "viewer, operator or admin", for error messages.
func validRoles() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.rank() != 0 {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want %s", s, validRoles())
}

// RoleOf returns the role of a client certificate the TLS stack has verified
// against the CA: the role named by its one OU entry starting with
// RoleOUPrefix.
func RoleOf(cert *x509.Certificate) (Role, error) {
	if cert == nil {
		return "", errors.New("no client certificate")
	}
	var found []string
	for _, ou := range cert.Subject.OrganizationalUnit {
		if v, ok := strings.CutPrefix(ou, RoleOUPrefix); ok {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("certificate %q has no role: want one subject OU %s<role>", cert.Subject.CommonName, RoleOUPrefix)
	case 1:
	default:
		return "", fmt.Errorf("certificate %q has %d roles (%s): want exactly one", cert.Subject.CommonName, len(found), strings.Join(found, ", "))
	}
	r, err := ParseRole(found[0])
	if err != nil {
		return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	return r, nil
}
