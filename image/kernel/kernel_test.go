package kernel

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fixture = "testdata/root"

func fixtureOptions() FindOptions {
	return FindOptions{
		ModulesRoot: filepath.Join(fixture, "usr/lib/modules"),
		DpkgDir:     filepath.Join(fixture, "var/lib/dpkg"),
		BootDir:     filepath.Join(fixture, "boot"),
	}
}

// bzImage returns a minimal image with a setup header whose version pointer
// leads to version.
func bzImage(version string) []byte {
	b := make([]byte, 0x600)
	binary.LittleEndian.PutUint16(b[hdrBootFlag:], 0xAA55)
	copy(b[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	binary.LittleEndian.PutUint16(b[hdrKernelVersion:], 0x300)
	copy(b[0x500:], version+"\x00")
	return b
}

func TestImageVersion(t *testing.T) {
	noMagic := bzImage("x")
	copy(noMagic[hdrMagic:], "XXXX")
	noPtr := bzImage("x")
	binary.LittleEndian.PutUint16(noPtr[hdrKernelVersion:], 0)
	noNUL := bzImage("")
	for i := 0x500; i < len(noNUL); i++ {
		noNUL[i] = 'a'
	}
	past := bzImage("x")
	binary.LittleEndian.PutUint16(past[hdrKernelVersion:], 0x1000)
	binary := bzImage("6.1\x01")

	for _, tc := range []struct {
		name    string
		img     []byte
		want    string
		wantErr string
	}{
		{name: "debian", img: bzImage("6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"),
			want: "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"},
		{name: "short file", img: []byte("MZ"), wantErr: "not a bzImage: shorter than a setup header"},
		{name: "no magic", img: noMagic, wantErr: "not a bzImage: no HdrS setup header"},
		{name: "no pointer", img: noPtr, wantErr: "bzImage has no kernel version string"},
		{name: "no NUL", img: noNUL, wantErr: "bzImage version string at 0x500: no NUL within 512 bytes"},
		{name: "past end", img: past, wantErr: "bzImage version string at 0x1200: EOF"},
		{name: "binary", img: binary, wantErr: "bzImage version string at 0x500: not printable text"},
		{name: "empty", img: bzImage(""), wantErr: "bzImage version string at 0x500 is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ImageVersion(strings.NewReader(string(tc.img)))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ImageVersion = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestFindInstalled(t *testing.T) {
	got, err := Find(fixtureOptions())
	if err != nil {
		t.Fatal(err)
	}
	// 6.1.100-1 beats 6.1.99-1 (a string comparison would not); the removed
	// 6.1.0-99 package and the 6.1.0-98 one without an image do not count.
	want := &Kernel{
		Release:        "6.1.0-10-amd64",
		Image:          filepath.Join(fixture, "boot/vmlinuz-6.1.0-10-amd64"),
		ModulesDir:     filepath.Join(fixture, "usr/lib/modules/6.1.0-10-amd64"),
		Package:        "linux-image-6.1.0-10-amd64",
		PackageVersion: "6.1.100-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Find:\n got %+v\nwant %+v", got, want)
	}
}

func TestFindErrors(t *testing.T) {
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "status"), []byte("Package: linux-image-amd64\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noHeader := filepath.Join(t.TempDir(), "vmlinuz-7.0.0-custom")
	if err := os.WriteFile(noHeader, []byte("not a bzImage"), 0o644); err != nil {
		t.Fatal(err)
	}
	anon := filepath.Join(t.TempDir(), "kernel.img")
	if err := os.WriteFile(anon, []byte("not a bzImage"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		edit func(*FindOptions)
		want string
	}{
		{"no kernel package", func(o *FindOptions) { o.DpkgDir = empty },
			"no Debian kernel found: apt-get install linux-image-amd64 (or pass --kernel PATH)"},
		{"no dpkg database", func(o *FindOptions) { o.DpkgDir = filepath.Join(empty, "none") },
			"no Debian kernel found: apt-get install linux-image-amd64 (or pass --kernel PATH): read dpkg status: open " + filepath.Join(empty, "none", "status") + ": no such file or directory"},
		{"modules missing", func(o *FindOptions) { o.ModulesRoot = "testdata/nomodules" },
			"kernel 6.1.0-10-amd64: no modules.dep in testdata/nomodules/6.1.0-10-amd64: apt-get install --reinstall linux-image-6.1.0-10-amd64"},
		{"unpackaged kernel without modules", func(o *FindOptions) { o.Path = noHeader },
			"kernel 7.0.0-custom: no modules.dep in " + filepath.Join(fixture, "usr/lib/modules/7.0.0-custom") + ": install the modules of kernel 7.0.0-custom there"},
		{"release unknown", func(o *FindOptions) { o.Path = anon },
			"kernel image " + anon + ": cannot tell its release: not a bzImage: shorter than a setup header, and the file is not named vmlinuz-<release>"},
		{"image missing", func(o *FindOptions) { o.Path = "testdata/none" },
			"kernel image: stat testdata/none: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fixtureOptions()
			tc.edit(&o)
			_, err := Find(o)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Find error:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
	o := fixtureOptions()
	o.DpkgDir = empty
	if _, err := Find(o); !errors.Is(err, errNoKernel) {
		t.Errorf("Find error %v does not wrap errNoKernel", err)
	}
}

// TestFindByPath checks that the header's release wins over a misleading
// file name and that the owning package is still found.
func TestFindByPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vmlinuz-wrong-name")
	if err := os.WriteFile(p, bzImage("6.1.0-10-amd64 (fake@example) #1 SMP"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := fixtureOptions()
	o.Path = p
	got, err := Find(o)
	if err != nil {
		t.Fatal(err)
	}
	want := &Kernel{
		Release:        "6.1.0-10-amd64",
		Image:          p,
		ModulesDir:     filepath.Join(fixture, "usr/lib/modules/6.1.0-10-amd64"),
		Package:        "linux-image-6.1.0-10-amd64",
		PackageVersion: "6.1.100-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Find:\n got %+v\nwant %+v", got, want)
	}
}

// TestFindHost runs against the build host's own Debian kernel package.
func TestFindHost(t *testing.T) {
	k, err := Find(FindOptions{})
	if errors.Is(err, errNoKernel) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Package, "linux-image-") || k.PackageVersion == "" {
		t.Errorf("Find() = %+v, want a linux-image package", k)
	}
	f, err := os.Open(k.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := ImageVersion(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, k.Release+" ") {
		t.Errorf("image %s says %q, Find says release %q", k.Image, v, k.Release)
	}
	byPath, err := Find(FindOptions{Path: k.Image})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(byPath, k) {
		t.Errorf("Find(Path: %s) = %+v, want %+v", k.Image, byPath, k)
	}
	t.Logf("host kernel: %+v", k)
}
