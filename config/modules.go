package config

// FeatureModules are the kernel modules the config's features need whatever the
// hardware: PID 1 loads them (with their dependencies) besides the drivers that
// match the machine's devices, and the builder checks they are on kernel.modules.
func (c *Config) FeatureModules() []string {
	var mods []string
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
	}
	return mods
}
