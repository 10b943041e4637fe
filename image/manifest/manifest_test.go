package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestHashFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "efi"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"vmlinuz":           "hello\n",
		"efi/hardvisor.efi": "abc",
		"empty":             "",
		"not-listed":        "ignored",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := HashFiles(dir, []string{"vmlinuz", "empty", "efi/hardvisor.efi"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Artifact{
		{Name: "efi/hardvisor.efi", Size: 3, SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{Name: "empty", Size: 0, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{Name: "vmlinuz", Size: 6, SHA256: "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HashFiles:\n got %+v\nwant %+v", got, want)
	}

	got, err = HashFiles(dir, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("HashFiles(no names) = %+v, %v; want empty", got, err)
	}
}

func TestHashFilesMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := HashFiles(dir, []string{"nope"})
	if want := "open " + filepath.Join(dir, "nope") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("HashFiles(missing) = %v, want %q", err, want)
	}
}

func sample() *Manifest {
	return &Manifest{
		Name:        "hardvisor",
		Version:     "0.3.0",
		Profile:     "debug",
		Cmdline:     "console=ttyS0 lockdown=integrity",
		Compression: "zstd",
		Kernel:      Kernel{Release: "6.1.0-28-amd64", Package: "linux-image-6.1.0-28-amd64", PackageVersion: "6.1.119-1", Modules: 12},
		Components:  []Component{{Name: "busybox", Version: "go1.26.8"}, {Name: "systemd-boot-efi", Version: "252.33-1~deb12u1"}},
		Artifacts: []Artifact{
			{Name: "hardvisor.efi", Size: 3, SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
			{Name: "initramfs.cpio.zst", Size: 6, SHA256: "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"},
		},
		InputHash: "0123abcd",
	}
}

func TestMarshal(t *testing.T) {
	m := &Manifest{
		Name:       "hv",
		Kernel:     Kernel{Release: "6.1.0", Modules: 2},
		Components: []Component{{Name: "a", Version: "1"}},
		Artifacts:  []Artifact{{Name: "x", Size: 1, SHA256: "ff"}},
		InputHash:  "h",
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "name": "hv",
  "version": "",
  "profile": "",
  "cmdline": "",
  "compression": "",
  "kernel": {
    "release": "6.1.0",
    "package": "",
    "packageVersion": "",
    "modules": 2
  },
  "components": [
    {
      "name": "a",
      "version": "1"
    }
  ],
  "artifacts": [
    {
      "name": "x",
      "size": 1,
      "sha256": "ff"
    }
  ],
  "inputHash": "h"
}
`
	if string(b) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", b, want)
	}
}

func TestMarshalReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := sample()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("Marshal output does not end in a newline: %q", b[len(b)-5:])
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Read after Marshal:\n got %+v\nwant %+v", got, m)
	}
	b2, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b2) != string(b) {
		t.Errorf("re-Marshal differs:\n%s\nvs\n%s", b2, b)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil || err.Error() != "open "+filepath.Join(dir, FileName)+": no such file or directory" {
		t.Errorf("Read(no manifest) = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Read(dir)
	if want := filepath.Join(dir, FileName) + ": invalid character 'n' looking for beginning of object key string"; err == nil || err.Error() != want {
		t.Errorf("Read(bad json) = %v, want %q", err, want)
	}
}

func TestArtifact(t *testing.T) {
	m := sample()
	for _, tc := range []struct {
		name string
		want Artifact
		ok   bool
	}{
		{"hardvisor.efi", m.Artifacts[0], true},
		{"initramfs.cpio.zst", m.Artifacts[1], true},
		{"vmlinuz", Artifact{}, false},
		{"", Artifact{}, false},
	} {
		got, ok := m.Artifact(tc.name)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Artifact(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
