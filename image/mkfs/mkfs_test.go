package mkfs

import (
	"reflect"
	"slices"
	"testing"

	"hardvisor.dev/hardvisor/image/closure"
)

func TestSpec(t *testing.T) {
	want := closure.Spec{Binaries: []string{"/usr/sbin/mke2fs"}, Extra: []string{"/etc/mke2fs.conf"}}
	if got := Spec(); !reflect.DeepEqual(got, want) {
		t.Errorf("Spec() = %+v, want %+v", got, want)
	}
}

// TestResolve resolves the closure on this Debian build host (e2fsprogs is
// installed by default): mke2fs brings its own libraries and the loader.
func TestResolve(t *testing.T) {
	c, err := closure.Resolve(Spec(), closure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{Mke2fs, Conf,
		"/usr/lib/x86_64-linux-gnu/libext2fs.so.2.4", "/usr/lib/x86_64-linux-gnu/libc.so.6"} {
		if !slices.Contains(c.Files, want) {
			t.Errorf("closure lacks %s; files:\n%v", want, c.Files)
		}
	}
}
