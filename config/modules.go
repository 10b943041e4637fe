package config

import (
	"slices"
	"strings"
)

// FeatureModules are the kernel modules the config's features need whatever the
// hardware: PID 1 loads them (with their dependencies) besides the drivers that
// match the machine's devices, and the builder checks they are on kernel.modules.
//
// nf_tables is always among them: every host installs its firewall.
func (c *Config) FeatureModules() []string {
	mods := []string{"nf_tables"}
	add := func(m string) {
		for _, have := range mods {
			if have == m {
				return
			}
		}
		mods = append(mods, m)
	}
	for _, n := range c.Networks {
		add("bridge")
		if n.VLAN != 0 {
			add("8021q")
		}
		if len(n.Uplinks) > 1 {
			add("bonding")
		}
	}
	if len(c.Guests) > 0 {
		add("tun")
		add("vhost_net")
		// QEMU and libvirt come in a squashfs image PID 1 mounts.
		add("loop")
		add("squashfs")
	}
	return mods
}

// kvmModules are KVM's. The CPU's alias matches kvm_intel or kvm_amd on
// every machine that can virtualize, but only guests use them.
var kvmModules = []string{"kvm", "kvm_intel", "kvm_amd"}

// featureOnlyModules are the modules that only a config feature uses: the
// guest networks' (bridge, 8021q, bonding), the guests' (their taps, vhost,
// the payload's loop device and squashfs) and KVM.
var featureOnlyModules = append([]string{"bridge", "8021q", "bonding", "tun", "vhost_net", "loop", "squashfs"}, kvmModules...)

// ImageModules is kernel.modules without the feature-only modules that this
// config's features do not use, and gives those it left out: nothing on the
// host could use them, so a host without guests has no KVM to attack and
// boots without loading it. The image carries the rest, with their
// dependencies.
func (c *Config) ImageModules() (keep, unused []string) {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	needed := map[string]bool{}
	for _, m := range c.FeatureModules() {
		needed[m] = true
	}
	if len(c.Guests) > 0 {
		for _, m := range kvmModules {
			needed[m] = true
		}
	}
	for _, m := range c.Kernel.Modules {
		if n := norm(m); slices.Contains(featureOnlyModules, n) && !needed[n] {
			unused = append(unused, m)
			continue
		}
		keep = append(keep, m)
	}
	return keep, unused
}
