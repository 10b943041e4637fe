package dpkg

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const status = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u10
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: linux-image-6.1.0-57-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+3)
Version: 6.1.192-3

Package: old-kernel
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: held
Status: hold ok installed
Architecture: all
Version: 1:2.0~rc1
Conffiles:
 /etc/held.conf 0123456789abcdef

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 3
`

func TestParseStatus(t *testing.T) {
	got, err := ParseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Name: "held", Architecture: "all", Version: "1:2.0~rc1", Source: "held", SourceVersion: "1:2.0~rc1"},
		{Name: "libc6", Architecture: "amd64", Version: "2.36-9+deb12u10", Source: "glibc", SourceVersion: "2.36-9+deb12u10"},
		{Name: "linux-image-6.1.0-57-amd64", Architecture: "amd64", Version: "6.1.192-3", Source: "linux-signed-amd64", SourceVersion: "6.1.192+3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseStatus:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseStatusErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Package: x\nStatus: install ok installed\nArchitecture: amd64\n", `line 1: installed package "x" has no Version field`},
		{"Package: x\nStatus: install ok installed\n", `line 1: installed package "x" has no Architecture, Version field`},
		{" dangling\n", "line 1: continuation line outside a field"},
		{"Package x\n", `line 1: want "Field: value", got "Package x"`},
		{"Package: x\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\nSource: y 2\n", `line 1: package x: malformed Source field "y 2"`},
	} {
		_, err := ParseStatus(strings.NewReader(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseStatus(%q) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestReadList(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "info"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, "info", name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("libc6:amd64.list", "/.\n/lib\n/lib/x86_64-linux-gnu/libc.so.6\n")
	write("dash.list", "/bin/dash\n\n")
	write("bad.list", "relative/path\n")

	for _, tc := range []struct {
		p       Package
		want    []string
		wantErr string
	}{
		{p: Package{Name: "libc6", Architecture: "amd64"}, want: []string{"/.", "/lib", "/lib/x86_64-linux-gnu/libc.so.6"}},
		{p: Package{Name: "dash", Architecture: "amd64"}, want: []string{"/bin/dash"}},
		{p: Package{Name: "bad", Architecture: "all"}, wantErr: filepath.Join(dir, "info", "bad.list") + `: line 1: path "relative/path" is not absolute`},
		{p: Package{Name: "gone", Architecture: "all"}, wantErr: "read file list of gone:all: no gone:all.list or gone.list in " + filepath.Join(dir, "info") + ": file does not exist"},
	} {
		got, err := ReadList(dir, tc.p)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ReadList(%s) error = %v, want %q", tc.p.ID(), err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ReadList(%s) = %q, want %q", tc.p.ID(), got, tc.want)
		}
	}
}

func TestParseDiversions(t *testing.T) {
	got, err := ParseDiversions(strings.NewReader("/bin/sh\n/bin/sh.distrib\ndash\n/usr/bin/x\n/usr/bin/x.real\n:\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Diversion{{"/bin/sh", "/bin/sh.distrib", "dash"}, {"/usr/bin/x", "/usr/bin/x.real", ":"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseDiversions = %+v, want %+v", got, want)
	}
	if _, err := ParseDiversions(strings.NewReader("/a\n/b\n")); err == nil || err.Error() != "line 2: truncated entry (want 3 lines per diversion, got 2)" {
		t.Errorf("truncated diversions: error = %v", err)
	}
}

var versionCases = []struct {
	a, b string
	want int
}{
	{"1.0", "1.0", 0},
	{"1.0", "1.0-0", 0},
	{"0:1.0", "1.0", 0},
	{"6.1.10-1", "6.1.9-1", 1},
	{"6.1.192-3", "6.1.158-1", 1},
	{"1.0~rc1", "1.0", -1},
	{"1.0~rc1", "1.0~rc1~", 1},
	{"1.0", "1.0+b1", -1},
	{"1.0a", "1.0+", -1},
	{"1:0.1", "2.0", 1},
	{"2.36-9+deb12u10", "2.36-9+deb12u9", 1},
	{"6.1.0-57-amd64", "6.1.0-9-amd64", 1},
	{"1.001", "1.1", 0},
	{"1.2.3", "1.2", 1},
	{"a", "", 1},
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range versionCases {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// TestCompareVersionsAgainstDpkg checks the table against dpkg itself, so the
// expectations above are not just this implementation's opinion.
func TestCompareVersionsAgainstDpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg not installed")
	}
	for _, tc := range versionCases {
		if tc.a == "" || tc.b == "" {
			continue // dpkg rejects empty versions
		}
		op := map[int]string{-1: "lt", 0: "eq", 1: "gt"}[tc.want]
		if err := exec.Command(dpkg, "--compare-versions", tc.a, op, tc.b).Run(); err != nil {
			t.Errorf("dpkg --compare-versions %s %s %s: %v", tc.a, op, tc.b, err)
		}
	}
}
