package boot

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/config"
)

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDevicesScan runs the coldplug scan over a fake sysfs: only the buses the
// index names are read, ACPI devices by name, and a rescan picks up a device
// that appeared without reading the others again.
func TestDevicesScan(t *testing.T) {
	sys := t.TempDir()
	writeFile(t, filepath.Join(sys, "bus/pci/devices/0000:00:01.0/modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
	writeFile(t, filepath.Join(sys, "bus/serio/devices/serio0/modalias"), "serio:ty01pr00id00ex00\n")
	os.MkdirAll(filepath.Join(sys, "bus/acpi/devices/LNXPWRBN:00"), 0o755)
	writeFile(t, filepath.Join(sys, "class/input/input0/modalias"), "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw\n")
	writeFile(t, filepath.Join(sys, "devices/system/cpu/modalias"), "cpu:type:x86,ven0000fam0006mod003F:feature:,0085\n")

	d := &devices{sysfs: sys, buses: []string{"acpi", "cpu", "pci", "virtio"}}
	want := []string{
		"acpi:LNXPWRBN:",
		"cpu:type:x86,ven0000fam0006mod003F:feature:,0085",
		"input:b0019v0000p0001e0000-e0,1,k74,ramlsfw",
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
	}
	if got := d.scan(); !reflect.DeepEqual(got, want) {
		t.Fatalf("first scan = %q\nwant %q", got, want)
	}
	// The virtio bus driver brought a NIC; the PCI device's file is gone but
	// was read already.
	writeFile(t, filepath.Join(sys, "bus/virtio/devices/virtio0/modalias"), "virtio:d00000001v00001AF4\n")
	os.Remove(filepath.Join(sys, "bus/pci/devices/0000:00:01.0/modalias"))
	want = append(want, "virtio:d00000001v00001AF4")
	if got := d.scan(); !reflect.DeepEqual(got, want) {
		t.Fatalf("rescan = %q\nwant %q", got, want)
	}
}

func TestMACs(t *testing.T) {
	sys := t.TempDir()
	writeFile(t, filepath.Join(sys, "lo/address"), "00:00:00:00:00:00\n")
	writeFile(t, filepath.Join(sys, "eth1/address"), "52:54:00:12:34:57\n")
	writeFile(t, filepath.Join(sys, "eth0/address"), "52:54:00:12:34:56\n")
	got, err := MACs(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"52:54:00:12:34:56", "52:54:00:12:34:57"}; !reflect.DeepEqual(got, want) {
		t.Errorf("MACs = %v, want %v", got, want)
	}
}

func TestHostsFile(t *testing.T) {
	want := "127.0.0.1\tlocalhost\n127.0.1.1\thv01\n::1\tlocalhost ip6-localhost\n"
	if got := string(HostsFile("hv01")); got != want {
		t.Errorf("HostsFile(hv01) = %q, want %q", got, want)
	}
}

func TestRemoveTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "modules")
	for name, size := range map[string]int{"6.1/kernel/fs/ext4.ko": 3000, "6.1/kernel/net/bridge.ko": 1200, "6.1/modules.dep": 34} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "6.1/link")); err != nil {
		t.Fatal(err)
	}
	freed, err := removeTree(dir)
	if err != nil || freed != 4234 {
		t.Fatalf("removeTree = %d, %v; want 4234 bytes", freed, err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatalf("the symlink's target went too: %v", err)
	}
	if freed, err := removeTree(dir); err != nil || freed != 0 {
		t.Fatalf("removeTree of a missing dir = %d, %v; want 0, nil", freed, err)
	}
}

// The modules step returns at once; its loads' failure stops the boot at
// ModulesLoaded, which waits for them, and only once.
func TestModulesLoadedReportsTheLoads(t *testing.T) {
	c, err := config.Parse("default", config.Default())
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{Console: io.Discard, Config: c}
	if err := (ModulesLoaded{Host: h}).Run(); err == nil || !strings.Contains(err.Error(), "modules step has not run") {
		t.Errorf("ModulesLoaded before the modules step = %v", err)
	}
	dir := filepath.Join(t.TempDir(), "no-index")
	if err := (Modules{Host: h, Dir: dir, Sysfs: t.TempDir()}).Run(); err != nil {
		t.Fatalf("modules step: %v", err)
	}
	err = ModulesLoaded{Host: h}.Run()
	if err == nil || !strings.Contains(err.Error(), "read module index") || !strings.Contains(err.Error(), dir) {
		t.Errorf("ModulesLoaded = %v, want the index's read error naming %s", err, dir)
	}
	if h.modules != nil || h.Modules.Loaded != nil {
		t.Errorf("a failed load left a loader: %+v", h.Modules)
	}
	if err := (ModulesLoaded{Host: h}).Run(); err == nil || !strings.Contains(err.Error(), "modules step has not run") {
		t.Errorf("ModulesLoaded twice = %v", err)
	}
	if err := h.LoadModules("ext4"); err == nil {
		t.Error("LoadModules after failed loads succeeded")
	}
}
