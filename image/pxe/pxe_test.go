package pxe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testCmdline = "console=ttyS0,115200 quiet rdinit=/init lockdown=integrity"

func TestScriptFor(t *testing.T) {
	got, err := ScriptFor(" " + testCmdline + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := `#!ipxe
# hardvisor network boot. Every line that loads a kernel or UKI carries the
# full command line: systemd's EFI stub replaces the UKI's own with it.
iseq ${platform} efi && goto uefi || goto bios
:bios
kernel vmlinuz console=ttyS0,115200 quiet rdinit=/init lockdown=integrity
initrd initramfs.img
boot
:uefi
chain hardvisor.efi console=ttyS0,115200 quiet rdinit=/init lockdown=integrity
`
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

func TestScriptForRejects(t *testing.T) {
	for _, c := range []string{
		"",
		"  \n",
		"a  b",
		"root=${x}",
		`x="a b"`,
		`a\b`,
		"a\tb",
		"a\nb",
		"a || b",
		"a # comment",
	} {
		if s, err := ScriptFor(c); err == nil {
			t.Errorf("ScriptFor(%q) = %q, want an error", c, s)
		}
	}
}

func TestWrite(t *testing.T) {
	src := t.TempDir()
	mtime := time.Unix(1700000000, 0)
	in := Inputs{Cmdline: testCmdline + "\n"}
	for _, f := range []struct {
		p       *string
		name    string
		content string
	}{
		{&in.Kernel, "k", "kernel bytes"},
		{&in.Initramfs, "i", "initramfs bytes"},
		{&in.UKI, "u", "uki bytes"},
	} {
		*f.p = filepath.Join(src, f.name)
		if err := os.WriteFile(*f.p, []byte(f.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(*f.p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	// An earlier bundle is replaced, stale files and all.
	if err := os.MkdirAll(filepath.Join(out, Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, Dir, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(out, in); err != nil {
		t.Fatal(err)
	}
	script, _ := ScriptFor(testCmdline)
	want := map[string]string{
		Kernel:    "kernel bytes",
		Initramfs: "initramfs bytes",
		UKI:       "uki bytes",
		Script:    script,
	}
	ents, err := os.ReadDir(filepath.Join(out, Dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got, w := strings.Join(names, " "), "boot.ipxe hardvisor.efi initramfs.img vmlinuz"; got != w {
		t.Errorf("bundle holds %s, want %s", got, w)
	}
	for name, content := range want {
		p := filepath.Join(out, Dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != content {
			t.Errorf("%s = %q, want %q", name, b, content)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", name, st.Mode())
		}
		if name != Script && !st.ModTime().Equal(mtime) {
			t.Errorf("%s mtime %v, want the source's %v", name, st.ModTime(), mtime)
		}
	}
	if st, _ := os.Stat(filepath.Join(out, Dir)); st.Mode().Perm() != 0o755 {
		t.Errorf("bundle dir mode %v, want 0755", st.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".pxe-*")); len(left) != 0 {
		t.Errorf("temporary directories left behind: %v", left)
	}
}

func TestWriteMissingInputKeepsOldBundle(t *testing.T) {
	out := t.TempDir()
	if err := os.MkdirAll(filepath.Join(out, Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(out, Dir, Script)
	if err := os.WriteFile(old, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(out, Inputs{Kernel: filepath.Join(out, "missing"), Initramfs: "x", UKI: "y", Cmdline: testCmdline})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Write with a missing kernel: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(old); string(b) != "old" {
		t.Errorf("old bundle changed: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".pxe-*")); len(left) != 0 {
		t.Errorf("temporary directories left behind: %v", left)
	}
}
