package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
)

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Role
		wantErr string
	}{
		{in: "viewer", want: RoleViewer},
		{in: "operator", want: RoleOperator},
		{in: "admin", want: RoleAdmin},
		{in: "Admin", wantErr: `unknown role "Admin": want viewer, operator or admin`},
		{in: "root", wantErr: `unknown role "root": want viewer, operator or admin`},
		{in: "", wantErr: `unknown role "": want viewer, operator or admin`},
	} {
		got, err := ParseRole(tc.in)
		if gotErr := errString(err); got != tc.want || gotErr != tc.wantErr {
			t.Errorf("ParseRole(%q) = %q, %q; want %q, %q", tc.in, got, gotErr, tc.want, tc.wantErr)
		}
	}
}

func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		r, need Role
		want    bool
	}{
		{RoleViewer, RoleViewer, true},
		{RoleViewer, RoleOperator, false},
		{RoleViewer, RoleAdmin, false},
		{RoleOperator, RoleViewer, true},
		{RoleOperator, RoleOperator, true},
		{RoleOperator, RoleAdmin, false},
		{RoleAdmin, RoleViewer, true},
		{RoleAdmin, RoleOperator, true},
		{RoleAdmin, RoleAdmin, true},
		{"root", RoleViewer, false},
		{"", RoleViewer, false},
		{RoleAdmin, "root", false},
		{RoleAdmin, "", false},
	} {
		if got := tc.r.Allows(tc.need); got != tc.want {
			t.Errorf("Role(%q).Allows(%q) = %v, want %v", tc.r, tc.need, got, tc.want)
		}
	}
}

func TestRoleOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ou      []string
		want    Role
		wantErr string
	}{
		{name: "one role", ou: []string{"hardvisor-role:operator"}, want: RoleOperator},
		{name: "other OUs ignored", ou: []string{"lab", "hardvisor-role:admin", "ops"}, want: RoleAdmin},
		{name: "no OU", wantErr: `certificate "alice" has no role: want one subject OU hardvisor-role:<role>`},
		{name: "no role OU", ou: []string{"admin"}, wantErr: `certificate "alice" has no role: want one subject OU hardvisor-role:<role>`},
		{name: "two roles", ou: []string{"hardvisor-role:viewer", "hardvisor-role:admin"},
			wantErr: `certificate "alice" has 2 roles (viewer, admin): want exactly one`},
		{name: "same role twice", ou: []string{"hardvisor-role:viewer", "hardvisor-role:viewer"},
			wantErr: `certificate "alice" has 2 roles (viewer, viewer): want exactly one`},
		{name: "unknown role", ou: []string{"hardvisor-role:root"},
			wantErr: `certificate "alice": unknown role "root": want viewer, operator or admin`},
		{name: "empty role", ou: []string{"hardvisor-role:"},
			wantErr: `certificate "alice": unknown role "": want viewer, operator or admin`},
		{name: "prefix case matters", ou: []string{"Hardvisor-Role:admin"},
			wantErr: `certificate "alice" has no role: want one subject OU hardvisor-role:<role>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: "alice", OrganizationalUnit: tc.ou}}
			got, err := RoleOf(cert)
			if gotErr := errString(err); got != tc.want || gotErr != tc.wantErr {
				t.Errorf("RoleOf(OU=%q) = %q, %q; want %q, %q", tc.ou, got, gotErr, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := RoleOf(nil); errString(err) != "no client certificate" {
		t.Errorf("RoleOf(nil) error = %q, want %q", errString(err), "no client certificate")
	}
}

// errString is err's message, "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
