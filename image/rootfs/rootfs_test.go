package rootfs

import (
	"io/fs"
	"reflect"
	"testing"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "/usr/bin/x", want: "usr/bin/x"},
		{in: "usr/bin/x", want: "usr/bin/x"},
		{in: "/usr//bin/x", want: "usr/bin/x"},
		{in: "usr//bin/x/", want: "usr/bin/x"},
		{in: "./etc/./passwd", want: "etc/passwd"},
		{in: "init", want: "init"},
		{in: "a/../b", err: `image path "a/../b" escapes the root`},
		{in: "../etc", err: `image path "../etc" escapes the root`},
		{in: "/usr/..", err: `image path "/usr/.." escapes the root`},
		{in: "/", err: `image path "/" names the root`},
		{in: "", err: `image path "" names the root`},
		{in: ".", err: `image path "." names the root`},
		{in: "//./", err: `image path "//./" names the root`},
	} {
		got, err := Clean(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.err {
			t.Errorf("Clean(%q) = %q, %q; want %q, %q", tc.in, got, gotErr, tc.want, tc.err)
		}
	}
}

func TestAddIdenticalIsNoOp(t *testing.T) {
	tr := New()
	for i := 0; i < 2; i++ {
		if err := tr.AddData("/etc/hostname", []byte("hv\n"), 0o644); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if err := tr.AddSymlink("init", "bbin/bb"); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if err := tr.AddFile("usr//lib/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", 0o644); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if err := tr.AddCharDev("dev/console", 0o600, 5, 1); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	if tr.Len() != 4 {
		t.Errorf("Len = %d, want 4", tr.Len())
	}
}

func TestAddConflict(t *testing.T) {
	for _, tc := range []struct {
		name       string
		first, now Entry
		want       string
	}{
		{
			name:  "symlink over file",
			first: Entry{Path: "bin/sh", Kind: File, Mode: 0o755, Source: "/bin/dash"},
			now:   Entry{Path: "/bin/sh", Kind: Symlink, Mode: 0o777, Target: "busybox"},
			want:  "image path /bin/sh: symlink to busybox conflicts with file from /bin/dash",
		},
		{
			name:  "different data",
			first: Entry{Path: "etc/hostname", Kind: File, Mode: 0o644, Data: []byte("a\n")},
			now:   Entry{Path: "etc//hostname", Kind: File, Mode: 0o644, Data: []byte("abc\n")},
			want:  "image path /etc/hostname: file of 4 bytes conflicts with file of 2 bytes",
		},
		{
			name:  "different mode",
			first: Entry{Path: "proc", Kind: Dir, Mode: 0o555},
			now:   Entry{Path: "proc", Kind: Dir, Mode: 0o755},
			want:  "image path /proc: dir conflicts with dir",
		},
		{
			name:  "different device",
			first: Entry{Path: "dev/console", Kind: CharDev, Mode: 0o600, Major: 5, Minor: 1},
			now:   Entry{Path: "dev/console", Kind: CharDev, Mode: 0o600, Major: 4, Minor: 1},
			want:  "image path /dev/console: chardev conflicts with chardev",
		},
		{
			name:  "different link target",
			first: Entry{Path: "init", Kind: Symlink, Mode: 0o777, Target: "bbin/bb"},
			now:   Entry{Path: "init", Kind: Symlink, Mode: 0o777, Target: "bbin/init"},
			want:  "image path /init: symlink to bbin/init conflicts with symlink to bbin/bb",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New()
			if err := tr.Add(tc.first); err != nil {
				t.Fatal(err)
			}
			err := tr.Add(tc.now)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Add = %v, want %q", err, tc.want)
			}
			got, _ := tr.Lookup(tc.first.Path)
			want := tc.first
			if !reflect.DeepEqual(got, want) {
				t.Errorf("after conflict entry = %+v, want the first %+v", got, want)
			}
		})
	}
}

func TestAddRejectsBadPath(t *testing.T) {
	tr := New()
	err := tr.AddData("../x", nil, 0o644)
	if want := `image path "../x" escapes the root`; err == nil || err.Error() != want {
		t.Errorf("AddData(../x) = %v, want %q", err, want)
	}
	err = tr.AddDir("/", 0o755)
	if want := `image path "/" names the root`; err == nil || err.Error() != want {
		t.Errorf("AddDir(/) = %v, want %q", err, want)
	}
	if tr.Len() != 0 {
		t.Errorf("Len = %d, want 0", tr.Len())
	}
}

func TestModeKeepsPermissionBitsOnly(t *testing.T) {
	tr := New()
	if err := tr.AddFile("x", "/src", fs.ModeSetuid|fs.ModeDir|0o4755); err != nil {
		t.Fatal(err)
	}
	e, _ := tr.Lookup("x")
	if e.Mode != 0o755 {
		t.Errorf("mode = %v, want %v", e.Mode, fs.FileMode(0o755))
	}
}

func TestEntries(t *testing.T) {
	tr := New()
	for _, err := range []error{
		tr.AddFile("/usr/lib/x86_64-linux-gnu/libc.so.6", "/host/libc", 0o644),
		tr.AddSymlink("lib64", "usr/lib64"),
		tr.AddDir("usr/lib", 0o700),
		tr.AddData("etc/os-release", []byte("ID=hv\n"), 0o444),
		tr.AddCharDev("dev/console", 0o600, 5, 1),
		tr.AddDir("tmp", 0o1777),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []Entry{
		{Path: "dev", Kind: Dir, Mode: 0o755},
		{Path: "dev/console", Kind: CharDev, Mode: 0o600, Major: 5, Minor: 1},
		{Path: "etc", Kind: Dir, Mode: 0o755},
		{Path: "etc/os-release", Kind: File, Mode: 0o444, Data: []byte("ID=hv\n")},
		{Path: "lib64", Kind: Symlink, Mode: 0o777, Target: "usr/lib64"},
		// fs.FileMode(0o1777).Perm() drops the sticky bit: only 0o777 survives.
		{Path: "tmp", Kind: Dir, Mode: 0o777},
		{Path: "usr", Kind: Dir, Mode: 0o755},
		{Path: "usr/lib", Kind: Dir, Mode: 0o700},
		{Path: "usr/lib/x86_64-linux-gnu", Kind: Dir, Mode: 0o755},
		{Path: "usr/lib/x86_64-linux-gnu/libc.so.6", Kind: File, Mode: 0o644, Source: "/host/libc"},
	}
	got := tr.Entries()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Entries:\n got %+v\nwant %+v", got, want)
	}
	if tr.Len() != 6 {
		t.Errorf("Len = %d, want 6 (implied parents not counted)", tr.Len())
	}
	if _, ok := tr.Lookup("usr"); ok {
		t.Error("Lookup(usr) found an implied directory; want only added entries")
	}
}

func TestMerge(t *testing.T) {
	a, b := New(), New()
	for _, err := range []error{
		a.AddSymlink("init", "bbin/bb"),
		a.AddData("etc/hostname", []byte("hv\n"), 0o644),
		b.AddSymlink("init", "bbin/bb"), // identical: fine
		b.AddDir("proc", 0o555),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Path: "etc", Kind: Dir, Mode: 0o755},
		{Path: "etc/hostname", Kind: File, Mode: 0o644, Data: []byte("hv\n")},
		{Path: "init", Kind: Symlink, Mode: 0o777, Target: "bbin/bb"},
		{Path: "proc", Kind: Dir, Mode: 0o555},
	}
	if got := a.Entries(); !reflect.DeepEqual(got, want) {
		t.Errorf("merged Entries:\n got %+v\nwant %+v", got, want)
	}
	if b.Len() != 2 {
		t.Errorf("source tree Len = %d after Merge, want 2", b.Len())
	}

	c := New()
	if err := c.AddData("etc/hostname", []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := a.Merge(c)
	if want := "image path /etc/hostname: file of 6 bytes conflicts with file of 3 bytes"; err == nil || err.Error() != want {
		t.Errorf("conflicting Merge = %v, want %q", err, want)
	}
}

func TestLookup(t *testing.T) {
	tr := New()
	if err := tr.AddSymlink("sbin/init", "../bbin/bb"); err != nil {
		t.Fatal(err)
	}
	want := Entry{Path: "sbin/init", Kind: Symlink, Mode: 0o777, Target: "../bbin/bb"}
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"sbin/init", true},
		{"/sbin/init", true},
		{"/sbin//init/", true},
		{"sbin", false},
		{"sbin/../sbin/init", false},
		{"/", false},
		{"init", false},
	} {
		got, ok := tr.Lookup(tc.p)
		if ok != tc.ok {
			t.Errorf("Lookup(%q) ok = %v, want %v", tc.p, ok, tc.ok)
			continue
		}
		if ok && !reflect.DeepEqual(got, want) {
			t.Errorf("Lookup(%q) = %+v, want %+v", tc.p, got, want)
		}
		if !ok && !reflect.DeepEqual(got, Entry{}) {
			t.Errorf("Lookup(%q) miss = %+v, want zero Entry", tc.p, got)
		}
	}
}

func TestCharDev(t *testing.T) {
	tr := New()
	if err := tr.AddCharDev("/dev/null", fs.ModeDevice|fs.ModeCharDevice|0o666, 1, 3); err != nil {
		t.Fatal(err)
	}
	got, ok := tr.Lookup("dev/null")
	want := Entry{Path: "dev/null", Kind: CharDev, Mode: 0o666, Major: 1, Minor: 3}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Lookup(dev/null) = %+v, %v; want %+v", got, ok, want)
	}
	if s := CharDev.String(); s != "chardev" {
		t.Errorf("CharDev.String() = %q", s)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{File: "file", Dir: "dir", Symlink: "symlink", CharDev: "chardev", Kind(9): "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestAddDataCopies(t *testing.T) {
	tr := New()
	data := []byte("abc")
	if err := tr.AddData("f", data, 0o644); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	e, _ := tr.Lookup("f")
	if string(e.Data) != "abc" {
		t.Errorf("stored data = %q after caller changed its slice, want %q", e.Data, "abc")
	}
}
