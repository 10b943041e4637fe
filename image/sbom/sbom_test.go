package sbom

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/image/rootfs"
	"hardvisor.dev/hardvisor/image/sbom/dpkg"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.spdx.json")

const fixtureRoot = "testdata/root"

var fixtureAliases = map[string]string{"/lib": "/usr/lib", "/bin": "/usr/bin", "/lib64": "/usr/lib64"}

func fixtureDpkg(t *testing.T, root string) *Dpkg {
	t.Helper()
	d, err := loadDpkg("testdata/dpkg", fixtureAliases, root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOwner(t *testing.T) {
	d := fixtureDpkg(t, "/")
	for _, tc := range []struct {
		path string
		want string // Package.ID() and version, "" for no owner
	}{
		// Listed as /lib/..., asked for either way.
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", "libc6:amd64 2.36-9+deb12u10"},
		{"/lib/x86_64-linux-gnu/libc.so.6", "libc6:amd64 2.36-9+deb12u10"},
		{"/lib/x86_64-linux-gnu/../x86_64-linux-gnu/libc.so.6", "libc6:amd64 2.36-9+deb12u10"},
		// wrapper diverts /usr/bin/tool; tool-pkg lists it as /bin/tool,
		// so tool-pkg's copy is the diverted one.
		{"/usr/bin/tool", "wrapper:all 1:0.5"},
		{"/usr/bin/tool.distrib", "tool-pkg:amd64 2.0-1"},
		{"/bin/tool.distrib", "tool-pkg:amd64 2.0-1"},
		// Shared by both architectures of a Multi-Arch: same package.
		{"/usr/share/doc/a_b", "libfoo1:amd64 1.0-1"},
		{"/usr/lib/i386-linux-gnu/libfoo.so.1", "libfoo1:i386 1.0-1"},
		// Removed packages own nothing.
		{"/etc/removed.conf", ""},
		{"/opt/unknown.bin", ""},
	} {
		p, ok := d.Owner(tc.path)
		got := ""
		if ok {
			got = p.ID() + " " + p.Version
		}
		if got != tc.want {
			t.Errorf("Owner(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// fixtureTree builds the same tree in either order of insertion.
func fixtureTree(t *testing.T, reverse bool) *rootfs.Tree {
	t.Helper()
	type add func(*rootfs.Tree) error
	src := func(p string) string { return filepath.Join(fixtureRoot, p) }
	adds := []add{
		func(t *rootfs.Tree) error {
			return t.AddData("etc/hardvisor/modules.load", []byte("/usr/lib/modules/r/kernel/a.ko\n"), 0o644)
		},
		func(t *rootfs.Tree) error { return t.AddFile("init", src("build/init"), 0o755) },
		func(t *rootfs.Tree) error {
			return t.AddFile("usr/lib/x86_64-linux-gnu/libc.so.6", src("usr/lib/x86_64-linux-gnu/libc.so.6"), 0o755)
		},
		func(t *rootfs.Tree) error {
			return t.AddFile("usr/lib/x86_64-linux-gnu/libstdc++.so.6", src("usr/lib/x86_64-linux-gnu/libstdc++.so.6"), 0o644)
		},
		func(t *rootfs.Tree) error { return t.AddFile("usr/bin/tool", src("usr/bin/tool"), 0o755) },
		func(t *rootfs.Tree) error {
			return t.AddFile("usr/bin/tool.distrib", src("usr/bin/tool.distrib"), 0o755)
		},
		func(t *rootfs.Tree) error { return t.AddFile("usr/share/doc/a_b", src("usr/share/doc/a_b"), 0o644) },
		func(t *rootfs.Tree) error { return t.AddFile("usr/share/doc/a-b", src("usr/share/doc/a-b"), 0o644) },
		func(t *rootfs.Tree) error { return t.AddFile("opt/unknown.bin", src("opt/unknown.bin"), 0o644) },
		func(t *rootfs.Tree) error { return t.AddSymlink("lib", "usr/lib") },
		func(t *rootfs.Tree) error { return t.AddDir("var", 0o755) },
	}
	tree := rootfs.New()
	for i := range adds {
		a := adds[i]
		if reverse {
			a = adds[len(adds)-1-i]
		}
		if err := a(tree); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

var fixtureOptions = Options{
	Name:     "hardvisor-test",
	Version:  "1.4.0",
	Created:  time.Unix(1700000000, 0).In(time.FixedZone("CET", 3600)),
	OwnFiles: map[string]bool{"/init": true},
}

func TestGenerateGolden(t *testing.T) {
	got, err := Generate(fixtureTree(t, false), fixtureDpkg(t, fixtureRoot), fixtureOptions)
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/golden.spdx.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Generate differs from %s (go test -run Golden -update to accept):\n%s", golden, got)
	}
}

func TestGenerateDeterministic(t *testing.T) {
	d := fixtureDpkg(t, fixtureRoot)
	a, err := Generate(fixtureTree(t, false), d, fixtureOptions)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(fixtureTree(t, false), fixtureDpkg(t, fixtureRoot), fixtureOptions)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Generate(fixtureTree(t, true), d, fixtureOptions)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Error("Generate is not deterministic")
	}
	// Any change of content changes the namespace.
	opts := fixtureOptions
	opts.Version = "1.4.1"
	e, err := Generate(fixtureTree(t, false), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	ns := func(b []byte) string {
		_, rest, _ := strings.Cut(string(b), `"documentNamespace": "`)
		v, _, _ := strings.Cut(rest, `"`)
		return v
	}
	if ns(a) == ns(e) {
		t.Errorf("namespace %s did not change with the version", ns(a))
	}
}

func TestGenerateErrors(t *testing.T) {
	tree := rootfs.New()
	if err := tree.AddFile("usr/bin/gone", "testdata/none", 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Generate(tree, nil, Options{})
	if want := "sbom: Options.Created is not set (pass SOURCE_DATE_EPOCH)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	_, err = Generate(tree, nil, Options{Created: time.Unix(1, 0)})
	if want := "sbom: /usr/bin/gone: open testdata/none: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestLoadDpkgHost(t *testing.T) {
	const dir = "/var/lib/dpkg"
	if _, err := os.Stat(filepath.Join(dir, "status")); err != nil {
		t.Skip("no dpkg database on this host")
	}
	start := time.Now()
	d, err := LoadDpkg(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d packages, %d paths in %v", len(d.pkgs), len(d.owners), time.Since(start))

	pkgs, err := dpkg.ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	var libc Package
	for _, p := range pkgs {
		if p.Name == "libc6" && p.Architecture == "amd64" {
			libc = p
		}
	}
	if libc.Name == "" {
		t.Skip("libc6:amd64 not installed")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "libc6:amd64").Output(); err == nil && string(out) != libc.Version {
		t.Errorf("status says libc6 %s, dpkg-query says %s", libc.Version, out)
	}
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"} {
		got, ok := d.Owner(p)
		if !ok || got != libc {
			t.Errorf("Owner(%s) = %+v, %v; want %+v", p, got, ok, libc)
		}
	}
}

func BenchmarkLoadDpkgHost(b *testing.B) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		b.Skip("no dpkg database on this host")
	}
	for b.Loop() {
		if _, err := LoadDpkg("/var/lib/dpkg"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCanon(t *testing.T) {
	d := &Dpkg{aliases: fixtureAliases}
	for _, tc := range []struct{ in, want string }{
		{"/.", "/"},
		{"/", "/"},
		{"/lib", "/usr/lib"},
		{"/lib/x/y.so", "/usr/lib/x/y.so"},
		{"/lib64/ld.so", "/usr/lib64/ld.so"},
		{"/libexec/x", "/libexec/x"},
		{"/usr/lib/x", "/usr/lib/x"},
		{"lib/x", "/usr/lib/x"},
		{"/lib//x/./y/../z", "/usr/lib/x/z"},
		{"/bin/", "/usr/bin"},
		{"/a/..", "/"},
		{"/..lib/x", "/..lib/x"},
		{"/x/.hidden", "/x/.hidden"},
	} {
		if got := d.canon(tc.in); got != tc.want {
			t.Errorf("canon(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
