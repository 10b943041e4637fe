package boot

import (
	"reflect"
	"testing"
)

func TestMissingArgs(t *testing.T) {
	want := "console=ttyS0,115200 lockdown=integrity slab_nomerge init_on_alloc=1"
	for _, tc := range []struct {
		running string
		missing []string
	}{
		{"BOOT_IMAGE=x console=ttyS0,115200 lockdown=integrity slab_nomerge init_on_alloc=1 extra\n", nil},
		{"console=ttyS0,115200 init_on_alloc=1", []string{"lockdown=integrity", "slab_nomerge"}},
		{"", []string{"console=ttyS0,115200", "lockdown=integrity", "slab_nomerge", "init_on_alloc=1"}},
	} {
		if got := MissingArgs(want, tc.running); !reflect.DeepEqual(got, tc.missing) {
			t.Errorf("MissingArgs(%q) = %q, want %q", tc.running, got, tc.missing)
		}
	}
}

func TestLockdownMode(t *testing.T) {
	for in, want := range map[string]string{
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality":   "none",
		"none integrity [confidentiality]":   "confidentiality",
		"":                                   "",
	} {
		if got := LockdownMode(in); got != want {
			t.Errorf("LockdownMode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSysctlPathsAndChecks(t *testing.T) {
	if got := (Sysctl{Key: "net.ipv4.conf.all.rp_filter"}).Path(); got != "/proc/sys/net/ipv4/conf/all/rp_filter" {
		t.Errorf("Path = %q", got)
	}
	seen := map[string]bool{}
	for _, s := range HardeningSysctls {
		if seen[s.Key] {
			t.Errorf("%s listed twice", s.Key)
		}
		seen[s.Key] = true
	}
	checks := []Check{
		{Name: "kernel.sysrq", Want: "0", Got: "0", OK: true},
		{Name: "kernel.io_uring_disabled", Want: "2", NotApplicable: true},
		{Name: "kernel.kptr_restrict", Want: "2", Got: "1"},
		{Name: "fs.suid_dumpable", Want: "0", Err: "permission denied"},
	}
	want := []string{"kernel.kptr_restrict: want 2, reads 1", "fs.suid_dumpable: want 0: permission denied"}
	if got := failed(checks); !reflect.DeepEqual(got, want) {
		t.Errorf("failed = %q, want %q", got, want)
	}
	if got := passed(checks); got != 1 {
		t.Errorf("passed = %d, want 1", got)
	}
	if got := applicable(checks); got != 3 {
		t.Errorf("applicable = %d, want 3", got)
	}
}
