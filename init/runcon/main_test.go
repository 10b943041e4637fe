package main

import (
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		context string
		argv    []string
		err     string
	}{
		{[]string{"system_u:system_r:svirt_tcg_t:s0:c1,c2", "/bin/cat", "/x"}, "system_u:system_r:svirt_tcg_t:s0:c1,c2", []string{"/bin/cat", "/x"}, ""},
		{[]string{"system_u:system_r:hv_mgmt_t:s0", "id"}, "system_u:system_r:hv_mgmt_t:s0", []string{"id"}, ""},
		{[]string{"system_u:system_r:hv_mgmt_t:s0"}, "", nil, usage},
		{nil, "", nil, usage},
		{[]string{"hv_mgmt_t", "id"}, "", nil, `context "hv_mgmt_t": want user:role:type:level`},
	} {
		ctx, argv, err := parseArgs(tt.args)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("parseArgs(%q) = %v, want %s", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || ctx != tt.context || !slices.Equal(argv, tt.argv) {
			t.Errorf("parseArgs(%q) = %q, %q, %v; want %q, %q", tt.args, ctx, argv, err, tt.context, tt.argv)
		}
	}
}

func TestParseUser(t *testing.T) {
	if u, err := parseUser("64055:64055"); err != nil || *u != (user{64055, 64055}) {
		t.Errorf("parseUser(64055:64055) = %v, %v", u, err)
	}
	for _, bad := range []string{"", "64055", "a:b", "1:-1", "1:2:3"} {
		if _, err := parseUser(bad); err == nil {
			t.Errorf("parseUser(%q) accepted", bad)
		}
	}
}
