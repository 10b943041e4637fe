package kernel

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/rootfs"
)

// The small index the PID-1-side tests use, in the builder's format.
const (
	testLoad = `# header
/m/kernel/virt/lib/irqbypass.ko
/m/kernel/arch/x86/kvm/kvm.ko
/m/kernel/arch/x86/kvm/kvm-intel.ko
/m/kernel/drivers/virtio/virtio_ring.ko
/m/kernel/drivers/virtio/virtio.ko
/m/kernel/drivers/virtio/virtio_pci.ko
/m/kernel/net/core/failover.ko
/m/kernel/drivers/net/net_failover.ko
/m/kernel/drivers/net/virtio_net.ko
/m/kernel/drivers/acpi/button.ko
/m/kernel/drivers/pwm/pwm-lpss.ko
/m/kernel/drivers/usb/storage/uas.ko
/m/kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko
/m/kernel/crypto/crc32c_generic.ko
/m/kernel/fs/jbd2/jbd2.ko
`
	testDep = `# header
/m/kernel/arch/x86/kvm/kvm-intel.ko: /m/kernel/arch/x86/kvm/kvm.ko /m/kernel/virt/lib/irqbypass.ko
/m/kernel/arch/x86/kvm/kvm.ko: /m/kernel/virt/lib/irqbypass.ko
/m/kernel/crypto/crc32c_generic.ko:
/m/kernel/drivers/acpi/button.ko:
/m/kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:
/m/kernel/drivers/net/net_failover.ko: /m/kernel/net/core/failover.ko
/m/kernel/drivers/net/virtio_net.ko: /m/kernel/drivers/net/net_failover.ko /m/kernel/net/core/failover.ko /m/kernel/drivers/virtio/virtio.ko /m/kernel/drivers/virtio/virtio_ring.ko
/m/kernel/drivers/pwm/pwm-lpss.ko:
/m/kernel/drivers/usb/storage/uas.ko:
/m/kernel/drivers/virtio/virtio.ko: /m/kernel/drivers/virtio/virtio_ring.ko
/m/kernel/drivers/virtio/virtio_pci.ko: /m/kernel/drivers/virtio/virtio.ko /m/kernel/drivers/virtio/virtio_ring.ko
/m/kernel/drivers/virtio/virtio_ring.ko:
/m/kernel/fs/jbd2/jbd2.ko: /m/kernel/crypto/crc32c_generic.ko
/m/kernel/net/core/failover.ko:
/m/kernel/virt/lib/irqbypass.ko:
`
	testAlias = `# header
alias cpu:type:x86,ven*fam*mod*:feature:*0085* kvm_intel
alias devname:kvm kvm
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias acpi*:LNXPWRBN:* button
alias acpi*:PNP0C0C:* button
alias platform:pwm-lpss pwm_lpss
alias usb:v13FDp3940d0[0-2]*dc*dsc*dp*ic*isc*ip*in* uas
alias usb:v152Dp0567d011[!4-7]dc*dsc*dp*ic*isc*ip*in* uas
alias pci:v00008086d*sv*sd*bc02sc00i* e1000e
alias crypto-crc32c crc32c_generic
`
)

// testCPU is an Intel CPU's modalias with VMX (feature 0x85).
const testCPU = "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0017,0018,0019,001A,001B,001C,002B,0034,003B,003D,0068,006F,0070,0072,0074,0075,0076,0079,0080,0081,0085,0089,008C,008D,0091,0093,0094,0095,0096,0097,0098,0099,009A,009B,009C,009D,009E,009F,00C0,00C5,00E1,00E7,00EB,00EC,00F0,00F1,00F3,00FE,00FF,0100,0101,0102,0103,0104,0111,0120,0121,0123,0125,0127,0128,0129,012A,012D,0140,0165,024A,025A,025B,025C,025D,025F"

func testIndex(t *testing.T) *Index {
	t.Helper()
	ix, err := ParseIndex(strings.NewReader(testLoad), strings.NewReader(testDep), strings.NewReader(testAlias))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// Alias lines split on any whitespace, as modprobe's do, not only on the
// single spaces the builder writes.
func TestIndexAliasWhitespace(t *testing.T) {
	ix, err := ParseIndex(strings.NewReader("/m/a.ko\n/m/b.ko\n"), strings.NewReader("/m/a.ko:\n/m/b.ko:\n"),
		strings.NewReader("alias\tpci:v1*  a\n  alias usb:v2* b \r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Match([]string{"pci:v1234", "usb:v2345"}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Match = %q, want [a b]", got)
	}
}

func TestIndexMatch(t *testing.T) {
	ix := testIndex(t)
	for _, tc := range []struct {
		name       string
		modaliases []string
		want       []string
	}{
		{"cpu feature", []string{testCPU}, []string{"kvm_intel"}},
		{"cpu without vmx", []string{"cpu:type:x86,ven0002fam0017mod0031:feature:,0000,0001,0084,0086"}, nil},
		{"virtio device", []string{"virtio:d00000001v00001AF4"}, []string{"virtio_net"}},
		{"virtio block is not net", []string{"virtio:d00000002v00001AF4"}, nil},
		{"virtio pci transport", []string{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"}, []string{"virtio_pci"}},
		{"intel ethernet class", []string{"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"}, []string{"e1000e"}},
		{"intel non-ethernet", []string{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"}, nil},
		{"acpi with trailing ids", []string{"acpi:LNXPWRBN:"}, []string{"button"}},
		{"acpi bus prefix", []string{"acpi:PNP0C0C:PNP0C0D:"}, []string{"button"}},
		{"dash in modalias", []string{"platform:pwm-lpss"}, []string{"pwm_lpss"}},
		{"underscore in modalias", []string{"platform:pwm_lpss"}, []string{"pwm_lpss"}},
		{"bracket range", []string{"usb:v13FDp3940d0150dc00dsc00dp00ic08isc06ip50in00"}, []string{"uas"}},
		{"bracket range miss", []string{"usb:v13FDp3940d0350dc00dsc00dp00ic08isc06ip50in00"}, nil},
		{"bracket negation", []string{"usb:v152Dp0567d0113dc00dsc00dp00ic08isc06ip50in00"}, []string{"uas"}},
		{"bracket negation miss", []string{"usb:v152Dp0567d0115dc00dsc00dp00ic08isc06ip50in00"}, nil},
		{"exact alias", []string{"devname:kvm"}, []string{"kvm"}},
		{"prefix is not a match", []string{"devname:kvm2"}, nil},
		{"whitespace of a sysfs file", []string{"acpi:LNXPWRBN:\n"}, []string{"button"}},
		{"unbalanced modalias", []string{"acpi:LNX]PWRBN:"}, nil},
		{"empty", []string{"", "  "}, nil},
		{"sorted and deduplicated", []string{
			"virtio:d00000001v00001AF4", "acpi:LNXPWRBN:", testCPU, "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00",
			"virtio:d00000001v00001AF4", "acpi:PNP0C0C:", "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw",
		}, []string{"button", "kvm_intel", "virtio_net", "virtio_pci"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ix.Match(tc.modaliases); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Match(%q) = %q, want %q", tc.modaliases, got, tc.want)
			}
		})
	}
}

func TestIndexClosure(t *testing.T) {
	ix := testIndex(t)
	for _, tc := range []struct {
		name  string
		names []string
		want  []string
	}{
		{"deps first", []string{"kvm_intel"}, []string{
			"/m/kernel/virt/lib/irqbypass.ko", "/m/kernel/arch/x86/kvm/kvm.ko", "/m/kernel/arch/x86/kvm/kvm-intel.ko",
		}},
		{"dash and underscore", []string{"kvm-intel", "pwm_lpss"}, []string{
			"/m/kernel/virt/lib/irqbypass.ko", "/m/kernel/arch/x86/kvm/kvm.ko", "/m/kernel/arch/x86/kvm/kvm-intel.ko",
			"/m/kernel/drivers/pwm/pwm-lpss.ko",
		}},
		{"recursive, in load-list order whatever the name order", []string{"virtio_net", "virtio_pci", "virtio_net"}, []string{
			"/m/kernel/drivers/virtio/virtio_ring.ko", "/m/kernel/drivers/virtio/virtio.ko", "/m/kernel/drivers/virtio/virtio_pci.ko",
			"/m/kernel/net/core/failover.ko", "/m/kernel/drivers/net/net_failover.ko", "/m/kernel/drivers/net/virtio_net.ko",
		}},
		{"soft pre-dependency", []string{"jbd2"}, []string{"/m/kernel/crypto/crc32c_generic.ko", "/m/kernel/fs/jbd2/jbd2.ko"}},
		{"no names", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ix.Closure(tc.names)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Closure(%q):\n got %q\nwant %q", tc.names, got, tc.want)
			}
		})
	}

	_, err := ix.Closure([]string{"kvm", "nope", "bogus", "nope", "bridge"})
	if want := `image has no modules named "bogus", "bridge", "nope"`; err == nil || err.Error() != want {
		t.Errorf("Closure error = %v, want %q", err, want)
	}
}

func TestIndexHas(t *testing.T) {
	ix := testIndex(t)
	for name, want := range map[string]bool{"kvm_intel": true, "kvm-intel": true, "pwm_lpss": true, "kvm": true, "bridge": false, "": false} {
		if got := ix.Has(name); got != want {
			t.Errorf("Has(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseIndexErrors(t *testing.T) {
	const (
		a = "/m/a.ko"
		b = "/m/b.ko"
	)
	load := a + "\n" + b + "\n"
	deps := a + ":\n" + b + ": " + a + "\n"
	for _, tc := range []struct {
		name, load, dep, alias, want string
	}{
		{"bad load list", "m/a.ko\n", "", "", `modules.load line 1: "m/a.ko" is not a clean absolute path`},
		{"same module twice", "/m/a-b.ko\n/n/a_b.ko\n", "", "", "modules.load: module a_b at both /m/a-b.ko and /n/a_b.ko"},
		{"dep without colon", load, a + "\n", "", `modules.dep line 1: want "MODULE: DEPENDENCIES", got "/m/a.ko"`},
		{"dep of unlisted module", load, "# c\n/m/c.ko:\n", "", "modules.dep line 2: /m/c.ko is not in modules.load"},
		{"dep line twice", load, deps + a + ":\n", "", "modules.dep line 3: /m/a.ko is listed twice"},
		{"unlisted dependency", load, a + ": /m/c.ko\n", "", "modules.dep line 1: /m/a.ko needs /m/c.ko, which is not in modules.load"},
		{"dependency loaded later", load, a + ": " + b + "\n", "", "modules.dep line 1: /m/a.ko needs /m/b.ko, which modules.load does not load before it"},
		{"self dependency", load, a + ": " + a + "\n", "", "modules.dep line 1: /m/a.ko needs /m/a.ko, which modules.load does not load before it"},
		{"module without dep line", load, a + ":\n", "", "modules.dep: no line for /m/b.ko"},
		{"alias syntax", load, deps, "alias x\n", `modules.alias line 1: want "alias PATTERN MODULE", got "alias x"`},
		{"alias not alias", load, deps, "options a x=1\n", `modules.alias line 1: want "alias PATTERN MODULE", got "options a x=1"`},
		{"alias with four fields", load, deps, "alias pci:* a b\n", `modules.alias line 1: want "alias PATTERN MODULE", got "alias pci:* a b"`},
		{"alias with four fields, tabs", load, deps, "alias\tpci:*\ta\tb\n", `modules.alias line 1: want "alias PATTERN MODULE", got "alias\tpci:*\ta\tb"`},
		{"alias of unlisted module", load, deps, "alias pci:* a\nalias x c\n", "modules.alias line 2: module c is not in modules.load"},
		{"alias unbalanced", load, deps, "alias pci:v[01 a\n", `modules.alias line 1: alias "pci:v[01": unbalanced brackets`},
		{"alias bad pattern", load, deps, "alias pci:\\ a\n", `modules.alias line 1: alias pattern "pci:\\": syntax error in pattern`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIndex(strings.NewReader(tc.load), strings.NewReader(tc.dep), strings.NewReader(tc.alias))
			if err == nil || err.Error() != tc.want {
				t.Errorf("ParseIndex error:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestReadIndex(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"modules.load": testLoad, "modules.dep": testDep} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ReadIndex(dir)
	if want := "read module index: open " + filepath.Join(dir, "modules.alias") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("ReadIndex error = %v, want %q", err, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.alias"), []byte("alias x nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadIndex(dir)
	if want := "read module index in " + dir + ": modules.alias line 1: module nope is not in modules.load"; err == nil || err.Error() != want {
		t.Errorf("ReadIndex error = %v, want %q", err, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(testAlias), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := ReadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ix.Match([]string{"acpi:LNXPWRBN:"}), []string{"button"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Match = %q, want %q", got, want)
	}
}

// TestModuleSetIndexFiles checks the dependency and alias files the builder
// writes, and that PID 1 reads back what it meant.
func TestModuleSetIndexFiles(t *testing.T) {
	ms, err := fixtureKernel().Modules([]string{"kvm-intel", "ext4", "bridge", "unix"})
	if err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	if err := ms.AddTo(tree); err != nil {
		t.Fatal(err)
	}
	abs := func(rel string) string { return "/" + img(rel) }
	// Sorted by path, which in the image's flat module directory is by name.
	wantDep := "# MODULE: the modules it needs loaded first (generated by hardvisor).\n" +
		abs("bridge.ko") + ": " + abs("stp.ko") + " " + abs("llc.ko") + "\n" +
		abs("crc16.ko") + ":\n" +
		abs("crc32c-intel.ko") + ":\n" +
		abs("crc32c_generic.ko") + ":\n" +
		// ext4's own "pre: crypto-crc32c" follows its modules.dep entries.
		abs("ext4.ko") + ": " + abs("crc16.ko") + " " + abs("mbcache.ko") + " " + abs("jbd2.ko") +
		" " + abs("crc32c_generic.ko") + " " + abs("crc32c-intel.ko") + "\n" +
		abs("irqbypass.ko") + ":\n" +
		abs("jbd2.ko") + ": " + abs("crc32c_generic.ko") + " " + abs("crc32c-intel.ko") + "\n" +
		abs("kvm-intel.ko") + ": " + abs("kvm.ko") + " " + abs("irqbypass.ko") + "\n" +
		abs("kvm.ko") + ": " + abs("irqbypass.ko") + "\n" +
		abs("llc.ko") + ":\n" +
		abs("mbcache.ko") + ":\n" +
		abs("stp.ko") + ": " + abs("llc.ko") + "\n"
	// Kernel order and spelling; no tun, virtio_net (not in the set) or
	// unusable pattern.
	wantAlias := "# The kernel's aliases of the modules in modules.load (generated by hardvisor).\n" +
		"alias crypto-crc32c crc32c_intel\n" +
		"alias crypto-crc32c crc32c_generic\n" +
		"alias crc32c crc32c_generic\n" +
		"alias cpu:type:x86,ven*fam*mod*:feature:*0085* kvm_intel\n" +
		"alias devname:kvm kvm\n" +
		"alias char-major-10-232 kvm\n" +
		"alias rtnl-link-bridge bridge\n"
	data := map[string]string{}
	for _, p := range []string{LoadListPath, DepPath, AliasPath} {
		e, ok := tree.Lookup(p)
		if !ok || e.Kind != rootfs.File || e.Mode != 0o644 {
			t.Fatalf("%s: %+v, %v", p, e, ok)
		}
		data[p] = string(e.Data)
	}
	if got := data[DepPath]; got != wantDep {
		t.Errorf("%s:\n%s\nwant\n%s", DepPath, got, wantDep)
	}
	if got := data[AliasPath]; got != wantAlias {
		t.Errorf("%s:\n%s\nwant\n%s", AliasPath, got, wantAlias)
	}

	ix, err := ParseIndex(strings.NewReader(data[LoadListPath]), strings.NewReader(data[DepPath]), strings.NewReader(data[AliasPath]))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ix.Match([]string{testCPU}), []string{"kvm_intel"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Match = %q, want %q", got, want)
	}
	got, err := ix.Closure([]string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		abs("crc32c_generic.ko"), abs("crc32c-intel.ko"), abs("jbd2.ko"),
		abs("mbcache.ko"), abs("crc16.ko"), abs("ext4.ko"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Closure(ext4):\n got %q\nwant %q", got, want)
	}
	// Closure of everything is the whole load list, in its order.
	var all []string
	for _, p := range ms.Order {
		all = append(all, moduleName(p))
	}
	got, err = ix.Closure(all)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustParseLoadList(t, data[LoadListPath]); !reflect.DeepEqual(got, want) {
		t.Errorf("Closure(all):\n got %q\nwant %q", got, want)
	}
	if ix.Has("unix") {
		t.Error("Has(unix) = true for a built-in module")
	}
}

// TestModulesNoAliases checks that a kernel without modules.alias is refused:
// PID 1 could not match any hardware.
func TestModulesNoAliases(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/a.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel/a.ko"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := (&Kernel{Release: "r", ModulesDir: dir}).Modules([]string{"a"})
	if want := "kernel r modules: open " + filepath.Join(dir, "modules.alias") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func mustParseLoadList(t *testing.T, s string) []string {
	t.Helper()
	l, err := ParseLoadList(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestIndexHost builds the default allow-list's module set from the build
// host's real Debian kernel, writes the image's files and matches real
// modaliases against what PID 1 reads back.
func TestIndexHost(t *testing.T) {
	k, err := Find(FindOptions{})
	if errors.Is(err, errNoKernel) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ms, err := k.Modules(config.LoadDefault().Kernel.Modules)
	if err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	if err := ms.AddTo(tree); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range []string{LoadListPath, DepPath, AliasPath} {
		e, ok := tree.Lookup(p)
		if !ok {
			t.Fatalf("no %s", p)
		}
		files = append(files, string(e.Data))
	}
	start := time.Now()
	ix, err := ParseIndex(strings.NewReader(files[0]), strings.NewReader(files[1]), strings.NewReader(files[2]))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d modules, %d aliases, %d bytes of aliases; parsed in %v",
		k.Release, len(ms.Order), len(ix.aliases), len(files[2]), time.Since(start))

	for _, tc := range []struct {
		modalias string
		want     []string
	}{
		// virtio_pci claims the whole Red Hat virtio vendor ID,
		// "pci:v00001AF4d*sv*sd*bc*sc*i*"; virtio_net only has a virtio
		// bus alias, so it comes in the round after virtio_pci loads.
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", []string{"virtio_pci"}},
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}},
		{"virtio:d00000002v00001AF4", []string{"virtio_blk"}},
		// VMX (0x85) brings kvm_intel; SSE4.2 (0x94) and PCLMULQDQ
		// (0x81) bring the CPU's crypto drivers.
		{testCPU, []string{"crc32c_intel", "crct10dif_pclmul", "kvm_intel"}},
		// An AMD CPU's list cut down to SVM (0xC2).
		{"cpu:type:x86,ven0002fam0019mod0001:feature:,0000,0001,0002,00C2", []string{"kvm_amd"}},
		// QEMU's e1000e (82574L).
		{"pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", []string{"e1000e"}},
	} {
		if got := ix.Match([]string{tc.modalias}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Match(%q) = %q, want %q", tc.modalias, got, tc.want)
		}
	}
	// button (the ACPI power button, "acpi*:LNXPWRBN:*") matches only if
	// the allow-list has it.
	var wantButton []string
	if ix.Has("button") {
		wantButton = []string{"button"}
	}
	if got := ix.Match([]string{"acpi:LNXPWRBN:"}); !reflect.DeepEqual(got, wantButton) {
		t.Errorf("Match(acpi:LNXPWRBN:) = %q, want %q", got, wantButton)
	}

	got, err := ix.Closure([]string{"kvm_intel"})
	if err != nil {
		t.Fatal(err)
	}
	dir := "/" + path.Join(ModulesImageDir, k.Release)
	want := []string{dir + "/irqbypass.ko", dir + "/kvm.ko", dir + "/kvm-intel.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Closure(kvm_intel) = %q, want %q", got, want)
	}
	got, err = ix.Closure([]string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, moduleName(p))
	}
	if want := []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Closure(virtio_net) = %q, want %q", names, want)
	}
}

func BenchmarkIndexMatchHost(b *testing.B) {
	k, err := Find(FindOptions{})
	if err != nil {
		b.Skip(err)
	}
	ms, err := k.Modules(config.LoadDefault().Kernel.Modules)
	if err != nil {
		b.Fatal(err)
	}
	ix, err := ParseIndex(strings.NewReader(string(formatLoadList(ms.Order))), strings.NewReader(string(formatDeps(ms.deps))), strings.NewReader(string(formatAliases(ms.aliases))))
	if err != nil {
		b.Fatal(err)
	}
	// A server's sysfs: a few hundred distinct devices, many repeated.
	modaliases := []string{testCPU, "platform:serial8250", "acpi:LNXPWRBN:"}
	for i := 0; i < 200; i++ {
		modaliases = append(modaliases,
			fmt.Sprintf("pci:v00008086d%08Xsv00008086sd00000000bc06sc04i00", 0x2000+i),
			fmt.Sprintf("acpi:PNP%04X:", i),
			"acpi:PNP0A08:PNP0A03:")
	}
	for b.Loop() {
		ix.Match(modaliases)
	}
}

func TestIndexBuses(t *testing.T) {
	got := testIndex(t).Buses()
	want := []string{"acpi", "cpu", "devname", "pci", "platform", "usb", "virtio"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Buses = %v, want %v", got, want)
	}
}
