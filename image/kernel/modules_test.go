package kernel

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/image/rootfs"
)

const fixtureRelease = "6.1.0-10-amd64"

func fixtureKernel() *Kernel {
	return &Kernel{Release: fixtureRelease, ModulesDir: filepath.Join(fixture, "usr/lib/modules", fixtureRelease)}
}

func img(rel string) string { return path.Join(ModulesImageDir, fixtureRelease, rel) }

func TestModules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		want  *ModuleSet
	}{
		{
			name: "hypervisor set",
			// Order in the allow-list does not matter; '-' and '_' are equal.
			names: []string{"kvm-intel", "ext4", "bridge", "8021q", "af-packet", "unix", "ext4"},
			want: &ModuleSet{
				Release: fixtureRelease,
				Order: []string{
					img("llc.ko"),
					img("mrp.ko"),
					img("stp.ko"),
					img("garp.ko"),
					img("8021q.ko"),
					img("bridge.ko"),
					// jbd2's "pre: crypto-crc32c" names an alias both provide.
					img("crc32c_generic.ko"),
					img("crc32c-intel.ko"),
					img("jbd2.ko"),
					img("mbcache.ko"),
					img("crc16.ko"),
					img("ext4.ko"),
					img("irqbypass.ko"),
					img("kvm.ko"),
					img("kvm-intel.ko"),
				},
				Builtin:  []string{"af_packet", "unix"},
				Optional: []string{img("crc32c_generic.ko"), img("crc32c-intel.ko")},
			},
		},
		{
			// tun's "post: sha256" is satisfied by a built-in module.
			name:  "softdep satisfied by builtin",
			names: []string{"tun"},
			want:  &ModuleSet{Release: fixtureRelease, Order: []string{img("tun.ko")}},
		},
		{
			// A module wanted by the allow-list is not optional even if a
			// softdep also pulls it in.
			name:  "softdep target also requested",
			names: []string{"crc32c_generic", "jbd2"},
			want: &ModuleSet{
				Release: fixtureRelease,
				Order: []string{
					img("crc32c_generic.ko"),
					img("crc32c-intel.ko"),
					img("jbd2.ko"),
				},
				Optional: []string{img("crc32c-intel.ko")},
			},
		},
		{
			name:  "only builtin",
			names: []string{"unix"},
			want:  &ModuleSet{Release: fixtureRelease, Builtin: []string{"unix"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fixtureKernel().Modules(tc.names)
			if err != nil {
				t.Fatal(err)
			}
			got.sources, got.builtinSource, got.deps, got.aliases = nil, "", nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Modules(%q):\n got %+v\nwant %+v", tc.names, got, tc.want)
			}
		})
	}
}

func TestModulesUnknown(t *testing.T) {
	_, err := fixtureKernel().Modules([]string{"ext4", "no-such", "bogus", ""})
	want := `kernel 6.1.0-10-amd64 has no modules named "", "bogus", "no-such" (checked modules.dep and modules.builtin in testdata/root/usr/lib/modules/6.1.0-10-amd64)`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}
}

func TestParseDep(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		wantPaths map[string]string
		wantDeps  map[string][]string
		wantErr   string
	}{
		{
			name:      "absolute paths inside the modules dir",
			in:        "/lib/modules/6.1.0-10-amd64/updates/dkms/foo.ko.xz: kernel/lib/bar.ko\nkernel/lib/bar.ko:\n\n",
			wantPaths: map[string]string{"foo": "updates/dkms/foo.ko.xz", "bar": "kernel/lib/bar.ko"},
			wantDeps:  map[string][]string{"foo": {"bar"}},
		},
		{name: "outside", in: "/opt/x.ko:\n", wantErr: "line 1: module /opt/x.ko lies outside the modules directory of 6.1.0-10-amd64"},
		{name: "no colon", in: "kernel/a.ko kernel/b.ko\n", wantErr: `line 1: want "module.ko: deps...", got "kernel/a.ko kernel/b.ko"`},
		{name: "dangling", in: "kernel/a.ko: kernel/b.ko\n", wantErr: "module a depends on kernel/b.ko, which has no entry of its own"},
		{name: "duplicate", in: "kernel/a-b.ko:\nextra/a_b.ko:\n", wantErr: "line 2: module a_b at both kernel/a-b.ko and extra/a_b.ko"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths, deps, err := parseDep(strings.NewReader(tc.in), fixtureRelease)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(paths, tc.wantPaths) || !reflect.DeepEqual(deps, tc.wantDeps) {
				t.Errorf("parseDep = %q, %q; want %q, %q", paths, deps, tc.wantPaths, tc.wantDeps)
			}
		})
	}
}

func TestParseSoftdep(t *testing.T) {
	got, err := parseSoftdep(strings.NewReader("# c\nsoftdep ext4 pre: crypto-crc32c\nsoftdep cifs gcm\nsoftdep a-b pre: x y post: z\nsoftdep a_b post: w\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]softdep{
		"ext4": {pre: []string{"crypto-crc32c"}},
		"cifs": {},
		"a_b":  {pre: []string{"x", "y"}, post: []string{"z", "w"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseSoftdep = %+v, want %+v", got, want)
	}
	if _, err := parseSoftdep(strings.NewReader("options x y=1\n")); err == nil {
		t.Error("parseSoftdep accepted a non-softdep line")
	}
}

func TestResolveCycle(t *testing.T) {
	paths, deps, err := parseDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n"), fixtureRelease)
	if err != nil {
		t.Fatal(err)
	}
	ix := &index{release: fixtureRelease, paths: paths, deps: deps}
	_, err = ix.resolve([]string{"a"})
	if want := "kernel 6.1.0-10-amd64 modules: dependency cycle through a"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

// TestResolvePostSoftdep checks that a post softdep loads after its module
// and that softdep loops do not hang or fail.
func TestResolvePostSoftdep(t *testing.T) {
	paths, deps, err := parseDep(strings.NewReader("a.ko:\nb.ko:\nc.ko:\n"), fixtureRelease)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := parseSoftdep(strings.NewReader("softdep a post: b\nsoftdep b pre: a post: c\nsoftdep c pre: b\n"))
	if err != nil {
		t.Fatal(err)
	}
	ix := &index{release: fixtureRelease, paths: paths, deps: deps, softdep: sd, aliases: map[string][]string{}}
	ms, err := ix.resolve([]string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{img("a.ko"), img("b.ko"), img("c.ko")}
	if !reflect.DeepEqual(ms.Order, want) {
		t.Errorf("Order = %q, want %q", ms.Order, want)
	}
}

func TestModuleSetAddTo(t *testing.T) {
	ms, err := fixtureKernel().Modules([]string{"bridge"})
	if err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	if err := ms.AddTo(tree); err != nil {
		t.Fatal(err)
	}
	host := func(rel string) string { return filepath.Join(fixture, "usr/lib/modules", fixtureRelease, rel) }
	want := []rootfs.Entry{
		{Path: "etc", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "etc/hardvisor", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "etc/hardvisor/modules.alias", Kind: rootfs.File, Mode: 0o644, Data: []byte(
			"# The kernel's aliases of the modules in modules.load (generated by hardvisor).\n" +
				"alias rtnl-link-bridge bridge\n")},
		{Path: "etc/hardvisor/modules.dep", Kind: rootfs.File, Mode: 0o644, Data: []byte(
			"# MODULE: the modules it needs loaded first (generated by hardvisor).\n" +
				"/usr/lib/modules/6.1.0-10-amd64/bridge.ko: /usr/lib/modules/6.1.0-10-amd64/stp.ko /usr/lib/modules/6.1.0-10-amd64/llc.ko\n" +
				"/usr/lib/modules/6.1.0-10-amd64/llc.ko:\n" +
				"/usr/lib/modules/6.1.0-10-amd64/stp.ko: /usr/lib/modules/6.1.0-10-amd64/llc.ko\n")},
		{Path: "etc/hardvisor/modules.load", Kind: rootfs.File, Mode: 0o644, Data: []byte(
			"# Kernel modules to load in this order with finit_module (generated by hardvisor).\n" +
				"/usr/lib/modules/6.1.0-10-amd64/llc.ko\n" +
				"/usr/lib/modules/6.1.0-10-amd64/stp.ko\n" +
				"/usr/lib/modules/6.1.0-10-amd64/bridge.ko\n")},
		{Path: "usr", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "usr/lib", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "usr/lib/modules", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "usr/lib/modules/6.1.0-10-amd64", Kind: rootfs.Dir, Mode: 0o755},
		{Path: "usr/lib/modules/6.1.0-10-amd64/bridge.ko", Kind: rootfs.File, Mode: 0o644, Source: host("kernel/net/bridge/bridge.ko")},
		{Path: "usr/lib/modules/6.1.0-10-amd64/llc.ko", Kind: rootfs.File, Mode: 0o644, Source: host("kernel/net/llc/llc.ko")},
		{Path: "usr/lib/modules/6.1.0-10-amd64/modules.builtin", Kind: rootfs.File, Mode: 0o644, Source: host("modules.builtin")},
		{Path: "usr/lib/modules/6.1.0-10-amd64/stp.ko", Kind: rootfs.File, Mode: 0o644, Source: host("kernel/net/802/stp.ko")},
	}
	if got := tree.Entries(); !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}

	// What PID 1 reads back is what the builder meant.
	e, _ := tree.Lookup(LoadListPath)
	paths, err := ParseLoadList(strings.NewReader(string(e.Data)))
	if err != nil {
		t.Fatal(err)
	}
	var wantPaths []string
	for _, p := range ms.Order {
		wantPaths = append(wantPaths, "/"+p)
	}
	if !reflect.DeepEqual(paths, wantPaths) {
		t.Errorf("ParseLoadList = %q, want %q", paths, wantPaths)
	}
}

func TestParseLoadList(t *testing.T) {
	got, err := ParseLoadList(strings.NewReader("# header\n\n/usr/lib/modules/r/a.ko\n  /usr/lib/modules/r/b.ko.zst  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/lib/modules/r/a.ko", "/usr/lib/modules/r/b.ko.zst"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ParseLoadList = %q, want %q", got, want)
	}
	for _, tc := range []struct{ in, want string }{
		{"usr/lib/a.ko\n", `module load list line 1: "usr/lib/a.ko" is not a clean absolute path`},
		{"/usr/lib/../a.ko\n", `module load list line 1: "/usr/lib/../a.ko" is not a clean absolute path`},
		{"/a.ko /b.ko\n", `module load list line 1: "/a.ko /b.ko": want one path per line`},
		{"/etc/passwd\n", `module load list line 1: "/etc/passwd" is not a kernel module file`},
		{"/a.ko\n/b.ko\n/a.ko\n", "module load list line 3: /a.ko is listed twice"},
	} {
		if _, err := ParseLoadList(strings.NewReader(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("ParseLoadList(%q) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestModulesHost resolves the hypervisor's modules against the build host's
// real Debian kernel.
func TestModulesHost(t *testing.T) {
	k, err := Find(FindOptions{})
	if errors.Is(err, errNoKernel) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ms, err := k.Modules([]string{"virtio_net", "bridge", "8021q", "kvm_intel", "vhost_net", "ext4", "ipv6", "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resolved %d modules for %s in %v", len(ms.Order), k.Release, time.Since(start))

	pos := map[string]int{}
	for i, p := range ms.Order {
		pos[moduleName(p)] = i
	}
	for _, name := range []string{"virtio_net", "bridge", "8021q", "kvm_intel", "vhost_net", "ext4"} {
		if _, ok := pos[name]; !ok {
			t.Errorf("%s missing from %q", name, ms.Order)
		}
	}
	// In Debian's 6.1 kernel virtio and virtio_ring are modules, and these
	// are the dependencies modules.dep lists.
	for _, c := range [][2]string{
		{"virtio_ring", "virtio"}, {"virtio", "virtio_net"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"},
		{"llc", "stp"}, {"stp", "bridge"}, {"garp", "8021q"}, {"mrp", "8021q"},
		{"irqbypass", "kvm"}, {"kvm", "kvm_intel"},
		{"tun", "vhost_net"}, {"tap", "vhost_net"}, {"vhost_iotlb", "vhost"}, {"vhost", "vhost_net"},
		{"crc16", "ext4"}, {"mbcache", "ext4"}, {"jbd2", "ext4"},
		{"crc32c_generic", "jbd2"},
	} {
		before, ok1 := pos[c[0]]
		after, ok2 := pos[c[1]]
		if !ok1 || !ok2 || before >= after {
			t.Errorf("want %s before %s in %q", c[0], c[1], ms.Order)
		}
	}
	if want := []string{"ipv6", "unix"}; !reflect.DeepEqual(ms.Builtin, want) {
		t.Errorf("Builtin = %q, want %q", ms.Builtin, want)
	}
	// Every module's modules.dep dependencies come before it.
	ix, err := loadIndex(k.ModulesDir, k.Release)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ms.Order {
		for _, d := range ix.deps[moduleName(p)] {
			if j, ok := pos[d]; !ok || j >= i {
				t.Errorf("%s needs %s, which is not loaded before it", p, d)
			}
		}
	}
	again, err := k.Modules([]string{"ext4", "vhost_net", "kvm_intel", "8021q", "bridge", "virtio_net", "unix", "ipv6"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Order, ms.Order) {
		t.Errorf("order depends on the allow-list's order:\n%q\n%q", again.Order, ms.Order)
	}
	t.Logf("order: %s", strings.Join(ms.Order, " "))
	t.Logf("optional: %s", strings.Join(ms.Optional, " "))
}

func BenchmarkModulesHost(b *testing.B) {
	k, err := Find(FindOptions{})
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		if _, err := k.Modules([]string{"virtio_net", "bridge", "8021q", "kvm_intel", "vhost_net", "ext4"}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestModulesMissingFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/a.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &Kernel{Release: "r", ModulesDir: dir, Package: "linux-image-r"}
	_, err := k.Modules([]string{"a"})
	want := "kernel r: modules.dep names missing files " + filepath.Join(dir, "kernel/a.ko") + ": apt-get install --reinstall linux-image-r"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}
