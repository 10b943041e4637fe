package boot

import (
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"hardvisor.dev/hardvisor/image/selinux"
)

// fakeLabels is a labeler over a map.
type fakeLabels map[string]string

func (f fakeLabels) Label(p string) (string, error) {
	if l, ok := f[p]; ok {
		return l, nil
	}
	return "", errNoLabel
}

func (f fakeLabels) SetLabel(p, c string) error { f[p] = c; return nil }

func TestRelabel(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"etc/key.pem", "etc/other.pem", "dev/kvm", "dev/pts/0", "var/log/libvirt/qemu/g.log", "usr/bin/x"} {
		writeFile(t, filepath.Join(root, p), "")
	}
	q := regexp.QuoteMeta(root)
	fc, err := selinux.ParseFileContexts(strings.NewReader(strings.Join([]string{
		"/.*\tfile_ctx",
		q + "/dev(/.*)?\tdev_ctx",
		q + "/var/log(/.*)?\tlog_ctx",
		q + "/dev/pts(/.*)?\t<<none>>",
		q + "/dev/kvm\t--\tkvm_ctx",
		q + `/etc/key\.pem` + "\t--\tsecret_ctx",
		q + "/missing(/.*)?\tmissing_ctx",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	labels := fakeLabels{filepath.Join(root, "dev/kvm"): "kvm_ctx"}
	n, err := relabel(fc, fc.Roots(), labels)
	if err != nil {
		t.Fatal(err)
	}
	want := fakeLabels{
		root + "/dev":                        "dev_ctx",
		root + "/dev/kvm":                    "kvm_ctx",
		root + "/etc/key.pem":                "secret_ctx",
		root + "/var/log":                    "log_ctx",
		root + "/var/log/libvirt":            "log_ctx",
		root + "/var/log/libvirt/qemu":       "log_ctx",
		root + "/var/log/libvirt/qemu/g.log": "log_ctx",
	}
	if !mapsEqual(labels, want) || n != len(want)-1 {
		t.Errorf("relabel = %d, labels %v\nwant %d, %v", n, labels, len(want)-1, want)
	}
	if n, err := relabel(fc, fc.Roots(), labels); n != 0 || err != nil {
		t.Errorf("second relabel = %d, %v; want 0, nil", n, err)
	}
}

// goneLabels is fakeLabels where the files in gone vanish as relabel reads
// their label and those in goneOnSet as it sets it, as device nodes may
// while drivers probe beside the walk.
type goneLabels struct {
	fakeLabels
	gone, goneOnSet string
}

func (g goneLabels) Label(p string) (string, error) {
	if p == g.gone {
		return "", &fs.PathError{Op: "lgetxattr", Path: p, Err: syscall.ENOENT}
	}
	return g.fakeLabels.Label(p)
}

func (g goneLabels) SetLabel(p, c string) error {
	if p == g.goneOnSet {
		return &fs.PathError{Op: "lsetxattr", Path: p, Err: syscall.ENOENT}
	}
	return g.fakeLabels.SetLabel(p, c)
}

func TestRelabelSkipsFilesThatGoAway(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"dev/a", "dev/b", "dev/c"} {
		writeFile(t, filepath.Join(root, p), "")
	}
	fc, err := selinux.ParseFileContexts(strings.NewReader(regexp.QuoteMeta(root) + "/dev(/.*)?\tdev_ctx"))
	if err != nil {
		t.Fatal(err)
	}
	labels := goneLabels{fakeLabels: fakeLabels{}, gone: root + "/dev/a", goneOnSet: root + "/dev/b"}
	n, err := relabel(fc, fc.Roots(), labels)
	if err != nil {
		t.Fatalf("relabel: %v", err)
	}
	want := fakeLabels{root + "/dev": "dev_ctx", root + "/dev/c": "dev_ctx"}
	if !mapsEqual(labels.fakeLabels, want) || n != 2 {
		t.Errorf("relabel = %d, labels %v; want 2, %v", n, labels.fakeLabels, want)
	}
	// Any other failure still stops it.
	labels.goneOnSet = ""
	failing := failLabels{labels}
	if _, err := relabel(fc, fc.Roots(), failing); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("relabel with EACCES = %v, want the error", err)
	}
}

// failLabels refuses every SetLabel.
type failLabels struct{ goneLabels }

func (failLabels) SetLabel(p, c string) error {
	return &fs.PathError{Op: "lsetxattr", Path: p, Err: syscall.EACCES}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRootsBelow(t *testing.T) {
	roots := []string{"/dev", "/var/lib", "/var/lib/hardvisor/audit", "/var/lib/hardvisorx", "/var/log"}
	got := rootsBelow(roots, "/var/lib/hardvisor")
	if want := []string{"/var/lib/hardvisor", "/var/lib/hardvisor/audit"}; !slices.Equal(got, want) {
		t.Errorf("rootsBelow = %q, want %q", got, want)
	}
}

func TestSELinuxMode(t *testing.T) {
	for in, want := range map[string]string{"1": "enforcing", "0\n": "permissive", "": "", "2": "2"} {
		if got := SELinuxMode(in); got != want {
			t.Errorf("SELinuxMode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSELinuxCheck(t *testing.T) {
	for _, tt := range []struct {
		mode, profile, got string
		want               Check
	}{
		{"enforcing", "production", "enforcing", Check{Name: "selinux", Want: "enforcing", Got: "enforcing", OK: true}},
		{"", "production", "permissive", Check{Name: "selinux", Want: "enforcing", Got: "permissive"}},
		{"permissive", "production", "permissive", Check{Name: "selinux", Want: "enforcing", Got: "permissive"}},
		{"permissive", "debug", "permissive", Check{Name: "selinux", Want: "permissive", Got: "permissive", OK: true}},
		{"", "debug", "enforcing", Check{Name: "selinux", Want: "enforcing", Got: "enforcing", OK: true}},
		{"enforcing", "debug", "", Check{Name: "selinux", Want: "enforcing"}},
	} {
		if got := SELinuxCheck(tt.mode, tt.profile, tt.got); got != tt.want {
			t.Errorf("SELinuxCheck(%q, %q, %q) = %+v, want %+v", tt.mode, tt.profile, tt.got, got, tt.want)
		}
	}
	if s := SELinuxCheck("", "production", "permissive").String(); s != "selinux: want enforcing, reads permissive" {
		t.Errorf("String = %q", s)
	}
}
