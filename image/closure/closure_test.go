package closure

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// elfFile is what writeELF puts into a minimal ELF64 object: enough program
// and section headers for debug/elf (and this package) to read PT_INTERP,
// DT_NEEDED and DT_RUNPATH.
type elfFile struct {
	machine elf.Machine
	interp  string
	needed  []string
	runpath string
}

func (e elfFile) bytes() []byte {
	if e.machine == 0 {
		e.machine = elf.EM_X86_64
	}
	const (
		ehsize    = 64
		phentsize = 56
		shentsize = 64
	)
	dynstr := []byte{0}
	str := func(s string) uint64 {
		off := len(dynstr)
		dynstr = append(append(dynstr, s...), 0)
		return uint64(off)
	}
	var dyn []elf.Dyn64
	for _, n := range e.needed {
		dyn = append(dyn, elf.Dyn64{Tag: int64(elf.DT_NEEDED), Val: str(n)})
	}
	if e.runpath != "" {
		dyn = append(dyn, elf.Dyn64{Tag: int64(elf.DT_RUNPATH), Val: str(e.runpath)})
	}
	dyn = append(dyn, elf.Dyn64{Tag: int64(elf.DT_NULL)})
	shstr := []byte("\x00.dynstr\x00.dynamic\x00.shstrtab\x00")

	nph := 1
	if e.interp != "" {
		nph = 2
	}
	interpOff := uint64(ehsize + nph*phentsize)
	var interp []byte
	if e.interp != "" {
		interp = []byte(e.interp + "\x00")
	}
	dynstrOff := interpOff + uint64(len(interp))
	dynOff := dynstrOff + uint64(len(dynstr))
	dynSize := uint64(len(dyn) * 16)
	shstrOff := dynOff + dynSize
	shOff := shstrOff + uint64(len(shstr))

	var b bytes.Buffer
	w := func(v any) {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			panic(err)
		}
	}
	hdr := elf.Header64{
		Type: uint16(elf.ET_DYN), Machine: uint16(e.machine), Version: uint32(elf.EV_CURRENT),
		Phoff: ehsize, Shoff: shOff, Ehsize: ehsize, Phentsize: phentsize, Phnum: uint16(nph),
		Shentsize: shentsize, Shnum: 4, Shstrndx: 3,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	w(hdr)
	if e.interp != "" {
		w(elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: interpOff, Filesz: uint64(len(interp)), Memsz: uint64(len(interp)), Align: 1})
	}
	w(elf.Prog64{Type: uint32(elf.PT_DYNAMIC), Flags: uint32(elf.PF_R), Off: dynOff, Filesz: dynSize, Memsz: dynSize, Align: 8})
	b.Write(interp)
	b.Write(dynstr)
	for _, d := range dyn {
		w(d)
	}
	b.Write(shstr)
	w(elf.Section64{})
	w(elf.Section64{Name: 1, Type: uint32(elf.SHT_STRTAB), Off: dynstrOff, Size: uint64(len(dynstr)), Addralign: 1})
	w(elf.Section64{Name: 9, Type: uint32(elf.SHT_DYNAMIC), Off: dynOff, Size: dynSize, Link: 1, Addralign: 8, Entsize: 16})
	w(elf.Section64{Name: 18, Type: uint32(elf.SHT_STRTAB), Off: shstrOff, Size: uint64(len(shstr)), Addralign: 1})
	return b.Bytes()
}

// fixtureRoot builds a small merged-/usr file system:
//
//	/usr/bin/app        needs libfoo.so.1 (RUNPATH $ORIGIN/../lib/app) and libbar.so.2
//	/usr/bin/script     #!/usr/bin/app
//	/usr/bin/broken     needs libbaz.so.3 (nowhere) and libbar.so.2
//	/opt/lib32          first in ld.so.conf, holds an aarch64 libbar.so.2 to skip
//	/opt/lib            holds libbar.so.2 -> libbar.so.2.0, which needs libqux.so.1
func fixtureRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	file := func(p string, data []byte, mode fs.FileMode) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(p, target string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	const loader = "/lib64/ld-linux-x86-64.so.2"
	file("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", elfFile{}.bytes(), 0o755)
	symlink("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	symlink("lib", "usr/lib")
	symlink("lib64", "usr/lib64")
	symlink("bin", "usr/bin")
	symlink("sbin", "usr/sbin")
	if err := os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755); err != nil {
		t.Fatal(err)
	}

	file("usr/bin/app", elfFile{interp: loader, needed: []string{"libfoo.so.1", "libbar.so.2"}, runpath: "$ORIGIN/../lib/app"}.bytes(), 0o755)
	file("usr/bin/script", []byte("#!/usr/bin/app --flag\necho hi\n"), 0o755)
	file("usr/bin/broken", elfFile{interp: loader, needed: []string{"libbaz.so.3", "libbar.so.2"}}.bytes(), 0o755)
	file("usr/bin/data", []byte("not a program"), 0o644)
	file("usr/bin/foreign", elfFile{machine: elf.EM_AARCH64}.bytes(), 0o755)
	file("usr/lib/app/libfoo.so.1", elfFile{}.bytes(), 0o644)
	// Searched later than RUNPATH: must not win.
	file("usr/lib/x86_64-linux-gnu/libfoo.so.1", elfFile{}.bytes(), 0o644)
	file("opt/lib32/libbar.so.2", elfFile{machine: elf.EM_AARCH64}.bytes(), 0o644)
	file("opt/lib/libbar.so.2.0", elfFile{needed: []string{"libqux.so.1"}}.bytes(), 0o644)
	symlink("opt/lib/libbar.so.2", "libbar.so.2.0")
	file("usr/lib/x86_64-linux-gnu/libqux.so.1", elfFile{}.bytes(), 0o644)

	file("usr/lib/app/plugins/plugin.so", elfFile{needed: []string{"libqux.so.1"}}.bytes(), 0o644)
	file("usr/lib/app/plugins/data/table.txt", []byte("data"), 0o600)
	// Firmware for another machine: data, even though it names a loader.
	file("usr/lib/app/plugins/data/firmware.elf", elfFile{machine: elf.EM_PPC64, interp: "/nonexistent", needed: []string{"libnone.so"}}.bytes(), 0o644)
	symlink("usr/lib/app/plugins/dangling", "gone")
	symlink("usr/lib/app/plugins/foo.so", "../libfoo.so.1")

	file("etc/ld.so.conf", []byte("include /etc/ld.so.conf.d/*.conf\n"), 0o644)
	file("etc/ld.so.conf.d/a.conf", []byte("# first\n/opt/lib32 # 32-bit\n"), 0o644)
	file("etc/ld.so.conf.d/b.conf", []byte("/opt/lib\n"), 0o644)
	return root
}

func TestResolveFixture(t *testing.T) {
	root := fixtureRoot(t)
	got, err := Resolve(Spec{
		Binaries: []string{"/bin/script"},
		Extra:    []string{"/lib/app/plugins"},
	}, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	want := &Closure{
		Root: root,
		Files: []string{
			"/opt/lib/libbar.so.2.0",
			"/usr/bin/app",
			"/usr/bin/script",
			"/usr/lib/app/libfoo.so.1",
			"/usr/lib/app/plugins/data/firmware.elf",
			"/usr/lib/app/plugins/data/table.txt",
			"/usr/lib/app/plugins/plugin.so",
			"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
			"/usr/lib/x86_64-linux-gnu/libqux.so.1",
		},
		Links: map[string]string{
			"/bin":                            "usr/bin",
			"/lib":                            "usr/lib",
			"/lib64":                          "usr/lib64",
			"/opt/lib/libbar.so.2":            "libbar.so.2.0",
			"/usr/lib/app/plugins/dangling":   "gone",
			"/usr/lib/app/plugins/foo.so":     "../libfoo.so.1",
			"/usr/lib64/ld-linux-x86-64.so.2": "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		},
		Dirs: []string{"/usr/lib/app/plugins", "/usr/lib/app/plugins/data"},
	}
	got.modes = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Resolve:\n got %+v\nwant %+v", got, want)
	}
}

func TestResolveErrors(t *testing.T) {
	root := fixtureRoot(t)
	_, err := Resolve(Spec{
		Binaries: []string{"/usr/bin/broken", "/usr/bin/nope", "/usr/bin/data", "/usr/bin/foreign"},
		Extra:    []string{"/usr/share/missing"},
	}, Options{Root: root})
	want := strings.Join([]string{
		"closure: /usr/bin/broken needs libbaz.so.3: not found in /opt/lib32, /opt/lib, /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib64, /usr/lib64, /lib, /usr/lib",
		"closure: binary /usr/bin/nope not found (is its Debian package installed?)",
		"closure: binary /usr/bin/data is not executable",
		"closure: binary /usr/bin/foreign is for EM_AARCH64, not this host's EM_X86_64",
		"closure: extra file /usr/share/missing not found (is its Debian package installed?)",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}

	// A library's own missing dependency names the binary and the library.
	if err := os.Remove(filepath.Join(root, "usr/lib/x86_64-linux-gnu/libqux.so.1")); err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(Spec{Binaries: []string{"/usr/bin/app"}}, Options{Root: root, SearchPaths: []string{"/opt/lib"}})
	want = "closure: /usr/bin/app: /opt/lib/libbar.so.2.0 needs libqux.so.1: not found in /opt/lib"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}
}

func TestParseLdSoConf(t *testing.T) {
	dirs, includes, err := parseLdSoConf(strings.NewReader("# c\ninclude /etc/ld.so.conf.d/*.conf\n/usr/local/lib\n/a:/b,/c /d # x\nhwcap 0 nosegneg\nrelative\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/local/lib", "/a", "/b", "/c", "/d"}; !reflect.DeepEqual(dirs, want) {
		t.Errorf("dirs = %q, want %q", dirs, want)
	}
	if want := []string{"/etc/ld.so.conf.d/*.conf"}; !reflect.DeepEqual(includes, want) {
		t.Errorf("includes = %q, want %q", includes, want)
	}
}

func hostLS(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/ls", "/bin/ls"} {
		if f, err := elf.Open(p); err == nil {
			f.Close()
			return p
		}
	}
	t.Skip("no dynamic ls on this host")
	return ""
}

func TestResolveHost(t *testing.T) {
	ls := hostLS(t)
	c, err := Resolve(Spec{Binaries: []string{ls}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for _, f := range c.Files {
		switch filepath.Base(f) {
		case "libc.so.6":
			libc = true
		case "ld-linux-x86-64.so.2":
			loader = true
		}
	}
	if !libc || !loader {
		t.Errorf("closure of %s lacks libc.so.6 or the loader: %q", ls, c.Files)
	}
	// The loader path in the binary must resolve through the links.
	f, err := elf.Open(ls)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		var b bytes.Buffer
		b.ReadFrom(p.Open())
		interp := strings.TrimRight(b.String(), "\x00")
		real, links, err := (&resolver{root: "/"}).follow(interp)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if c.Links[l.path] != l.target {
				t.Errorf("closure lacks symlink %s -> %s on the way to the loader %s", l.path, l.target, interp)
			}
		}
		if !contains(c.Files, real) {
			t.Errorf("closure lacks the loader %s (%s)", interp, real)
		}
	}
	t.Logf("files: %q", c.Files)
	t.Logf("links: %q", c.Links)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// materialize writes the tree into dir the way the initramfs will hold it.
func materialize(t *testing.T, tree *rootfs.Tree, dir string) {
	t.Helper()
	for _, e := range tree.Entries() {
		p := filepath.Join(dir, e.Path)
		var err error
		switch e.Kind {
		case rootfs.Dir:
			err = os.Mkdir(p, e.Mode|0o700)
		case rootfs.Symlink:
			err = os.Symlink(e.Target, p)
		case rootfs.File:
			data := e.Data
			if e.Source != "" {
				data, err = os.ReadFile(e.Source)
			}
			if err == nil {
				err = os.WriteFile(p, data, e.Mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestChrootHost proves a closure is complete: the binary runs in a root
// holding nothing else.
func TestChrootHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Skip("no chroot command")
	}
	ls := hostLS(t)
	c, err := Resolve(Spec{Binaries: []string{ls}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	if err := c.AddTo(tree); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	materialize(t, tree, dir)

	cmd := exec.Command(chroot, dir, ls, "/")
	cmd.Env = []string{} // no LD_LIBRARY_PATH or locale from the test's environment
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s %s /: %v\n%s", dir, ls, err, out)
	}
	got := strings.Fields(string(out))
	var want []string
	for _, e := range tree.Entries() {
		if !strings.Contains(e.Path, "/") {
			want = append(want, e.Path)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ls / in the chroot printed %q, want %q", got, want)
	}
}
