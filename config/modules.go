package config

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
