package plan

import (
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/config"
)

func TestCmdline(t *testing.T) {
	cfg := config.LoadDefault()
	cfg.Kernel.Cmdline = []string{"nosmt"}
	got := Cmdline(cfg)
	want := "console=tty0 console=ttyS0,115200 quiet rdinit=/init lockdown=integrity security=selinux module.sig_enforce=1 slab_nomerge " +
		"init_on_alloc=1 init_on_free=1 page_alloc.shuffle=1 randomize_kstack_offset=on vsyscall=none debugfs=off " +
		"pti=on oops=panic panic=10 transparent_hugepage=madvise nosmt"
	if got != want {
		t.Errorf("Cmdline =\n%s\nwant\n%s", got, want)
	}
}

func TestOSRelease(t *testing.T) {
	cfg := config.LoadDefault()
	got := string(OSRelease(cfg))
	for _, line := range []string{"ID=hardvisor\n", "VERSION_ID=" + cfg.Version + "\n", "IMAGE_VERSION=" + cfg.Version + "\n", "VARIANT_ID=production\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("os-release lacks %q:\n%s", line, got)
		}
	}
}

func TestFeatureModulesMustBeAllowed(t *testing.T) {
	cfg := config.LoadDefault()
	cfg.Networks = []config.Network{{Name: "prod", VLAN: 10, Uplinks: []config.Uplink{{MAC: "52:54:00:bb:00:01"}}}}
	cfg.Kernel.Modules = []string{"virtio_net"}
	_, err := New(cfg, Options{})
	want := "kernel.modules: the host's firewall and the config's networks and guests need nf_tables, bridge, 8021q; add them to the list"
	if err == nil || err.Error() != want {
		t.Errorf("New = %v, want %q", err, want)
	}
}

func TestProfileOverride(t *testing.T) {
	if _, err := New(config.LoadDefault(), Options{Profile: "fast"}); err == nil || !strings.Contains(err.Error(), `--profile "fast"`) {
		t.Errorf("New with a bad profile = %v", err)
	}
}
