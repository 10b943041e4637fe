package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

var (
	// An RFC 1123 label: hostnames and network names.
	labelRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	// Template, guest and domain names: safe as libvirt names, cgroup and
	// file names.
	nameRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	macRe     = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	semverRe  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$`)
	tzRe      = regexp.MustCompile(`^[A-Za-z0-9_+-]{1,32}(/[A-Za-z0-9_+-]{1,32}){0,3}$`)
	consoleRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,31}$`)
	moduleRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,54}$`)
	windowRe  = regexp.MustCompile(`^(Mon|Tue|Wed|Thu|Fri|Sat|Sun|daily) ([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)
	// An environment entry and a capability name.
	envRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	capRe  = regexp.MustCompile(`^(?i:cap_)?[A-Za-z_]{2,32}$`)
	userRe = regexp.MustCompile(`^(0|[1-9][0-9]{0,9}):(0|[1-9][0-9]{0,9})$`)
	// A kernel argument: key or key=value, no spaces or quotes.
	cmdlineRe = regexp.MustCompile(`^[^\s"'=][^\s"']*$`)
)

const (
	minGuestMemory = 16 * Mi
	maxGuestCPUs   = 4096 // KVM's largest KVM_MAX_VCPUS
)

// reservedCmdline are kernel arguments the production profile may not set:
// each would undo a setting hardvisor makes from this config (security.*,
// the module signature policy) or replace PID 1.
var reservedCmdline = []string{"init", "rdinit", "selinux", "enforcing", "security", "lsm", "lockdown", "module.sig_enforce"}

// checkExplicitZeros rejects zeros given explicitly for fields where zero
// means "use the default", before normalize would silently replace them.
func (d *decoder) checkExplicitZeros(c *Config) {
	if d.has("management.api.port") && c.Management.API.Port == 0 {
		d.errorf("management.api.port", "0 is out of range 1..65535")
	}
	if d.has("host.readyTimeout") && c.Host.ReadyTimeout == 0 {
		d.errorf("host.readyTimeout", "must be more than 0")
	}
	if d.has("resources.reserve.memory") && c.Resources.Reserve.Memory == 0 {
		d.errorf("resources.reserve.memory", "must be more than 0: the host needs memory of its own")
	}
	if d.has("resources.reserve.cpus") && c.Resources.Reserve.CPUs == 0 {
		d.errorf("resources.reserve.cpus", "must be at least 1: the host needs a CPU of its own")
	}
}

// validate checks everything decoding could not: formats, ranges, names,
// references between sections and the resource budget.
func (d *decoder) validate(c *Config) {
	d.checkTop(c)
	d.checkHosts(c)
	d.checkManagement(c)
	d.checkNetworks(c)
	d.checkResources(c)
	d.checkTemplates(c)
	d.checkGuests(c)
	d.checkUpdates(c)
	d.checkSecurity(c)
	d.checkKernel(c)
	d.checkServices(c)
}

func (d *decoder) checkTop(c *Config) {
	switch {
	case c.APIVersion == "":
		d.errorf("apiVersion", "required (%s)", APIVersion)
	case c.APIVersion != APIVersion:
		d.errorf("apiVersion", "unsupported %q, want %q", c.APIVersion, APIVersion)
	}
	switch {
	case c.Version == "":
		d.errorf("version", "required (semantic version, such as 1.0.0)")
	case !semverRe.MatchString(c.Version):
		d.errorf("version", "%q is not a semantic version MAJOR.MINOR.PATCH[-PRERELEASE]", c.Version)
	}
	if c.Profile != ProfileProduction && c.Profile != ProfileDebug {
		d.errorf("profile", "unknown profile %q, want production or debug", c.Profile)
	}
	d.checkHostname("host.hostname", c.Host.Hostname)
	if !tzRe.MatchString(c.Host.Timezone) {
		d.errorf("host.timezone", "%q is not a time zone name such as UTC or Europe/Berlin", c.Host.Timezone)
	}
	if !consoleRe.MatchString(c.Host.Console) {
		d.errorf("host.console", "%q is not a console device name such as ttyS0", c.Host.Console)
	}
}

func (d *decoder) checkHostname(path, name string) {
	if !labelRe.MatchString(name) {
		d.errorf(path, "%q is not a valid hostname (RFC 1123 label: letters, digits and inner '-', at most 63)", name)
	}
}

// checkMAC checks a required MAC address; it reports whether it is valid.
func (d *decoder) checkMAC(path, mac string) bool {
	switch {
	case mac == "":
		d.errorf(path, "required")
	case !macRe.MatchString(mac):
		d.errorf(path, "%q is not a MAC address xx:xx:xx:xx:xx:xx", mac)
	default:
		return true
	}
	return false
}

func (d *decoder) checkHosts(c *Config) {
	macs := map[string]int{}
	names := map[string]int{}
	for i, h := range c.Hosts {
		p := index("hosts", i)
		if d.checkMAC(p+".match.mac", h.Match.MAC) {
			if j, dup := macs[h.Match.MAC]; dup {
				d.errorf(p+".match.mac", "%s is also matched by hosts[%d]", h.Match.MAC, j)
			} else {
				macs[h.Match.MAC] = i
			}
		}
		if h.Hostname != "" {
			d.checkHostname(p+".hostname", h.Hostname)
			key := strings.ToLower(h.Hostname)
			if j, dup := names[key]; dup {
				d.errorf(p+".hostname", "%q is also the hostname of hosts[%d]", h.Hostname, j)
			} else {
				names[key] = i
			}
		}
		m := h.Management
		if m.Address != "" {
			d.checkAddress(p+".management.address", m.Address)
		}
		if m.Gateway != "" {
			d.checkIP(p+".management.gateway", m.Gateway)
		}
		for j, s := range m.DNS {
			d.checkIP(index(p+".management.dns", j), s)
		}
		// The address and gateway this host ends up with must agree, wherever
		// each comes from; blame the override.
		addr, gw := orElse(m.Address, c.Management.Address), orElse(m.Gateway, c.Management.Gateway)
		at := p + ".management.gateway"
		if m.Gateway == "" {
			at = p + ".management.address"
		}
		if m.Address != "" || m.Gateway != "" {
			d.checkGatewayInSubnet(at, addr, gw)
		}
	}
}

// orElse gives the override when it is set, else the base value.
func orElse(override, base string) string {
	if override != "" {
		return override
	}
	return base
}

func (d *decoder) checkAddress(path, s string) {
	if s == AddressDHCP {
		return
	}
	if _, err := netip.ParsePrefix(s); err != nil {
		d.errorf(path, "%q is neither dhcp nor an address in CIDR form such as 192.0.2.10/24", s)
	}
}

func (d *decoder) checkIP(path, s string) {
	if _, err := netip.ParseAddr(s); err != nil {
		d.errorf(path, "%q is not an IP address", s)
	}
}

func (d *decoder) checkGatewayInSubnet(path, addr, gw string) {
	p, err1 := netip.ParsePrefix(addr)
	g, err2 := netip.ParseAddr(gw)
	if err1 != nil || err2 != nil {
		return // dhcp, unset, or reported already
	}
	if !p.Masked().Contains(g) {
		d.errorf(path, "gateway %s is not in the subnet of %s", g, p)
	}
}

func (d *decoder) checkManagement(c *Config) {
	m := c.Management
	if m.NIC.MAC != "" {
		d.checkMAC("management.nic.mac", m.NIC.MAC)
	}
	d.checkAddress("management.address", m.Address)
	if m.Gateway != "" {
		d.checkIP("management.gateway", m.Gateway)
		d.checkGatewayInSubnet("management.gateway", m.Address, m.Gateway)
	}
	for i, s := range m.DNS {
		d.checkIP(index("management.dns", i), s)
	}
	if m.API.Port < 1 || m.API.Port > 65535 {
		d.errorf("management.api.port", "%d is out of range 1..65535", m.API.Port)
	}
	for _, f := range []struct{ path, v string }{
		{"management.api.clientCA", m.API.ClientCA}, {"management.api.serverCert", m.API.ServerCert}, {"management.api.serverKey", m.API.ServerKey},
	} {
		if f.v != "" {
			d.checkPath(f.path, f.v)
		}
	}
	if m.Syslog != "" {
		d.checkSyslog("management.syslog", m.Syslog)
	}
}

func (d *decoder) checkPath(path, s string) {
	if strings.ContainsFunc(s, unicode.IsControl) {
		d.errorf(path, "%q contains control characters", s)
	}
}

func (d *decoder) checkSyslog(path, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "tls" && u.Scheme != "udp") ||
		u.Hostname() == "" || u.User != nil || u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || !validPort(u.Port()) {
		d.errorf(path, "%q is not a syslog URL such as tcp://, tls:// or udp://host[:port]", s)
	}
}

// validPort reports whether p is empty or a port number.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// macVLAN is a NIC carrying a VLAN (0 for untagged).
type macVLAN struct {
	mac  string
	vlan int
}

func (d *decoder) checkNetworks(c *Config) {
	names := map[string]int{}
	sets := make([][]string, len(c.Networks)) // each network's uplink MACs, sorted
	firstUse := map[string]int{}              // MAC -> first network it is an uplink of
	onVLAN := map[macVLAN]int{}               // -> first network carrying it
	for i, n := range c.Networks {
		p := index("networks", i)
		switch {
		case n.Name == "":
			d.errorf(p+".name", "required")
		case !labelRe.MatchString(n.Name):
			d.errorf(p+".name", "%q is not a DNS label (letters, digits and inner '-', at most 63)", n.Name)
		default:
			key := strings.ToLower(n.Name)
			if j, dup := names[key]; dup {
				d.errorf(p+".name", "%q is also the name of networks[%d]", n.Name, j)
			} else {
				names[key] = i
			}
		}
		if n.VLAN != 0 || d.has(p+".vlan") {
			if n.VLAN < 1 || n.VLAN > 4094 {
				d.errorf(p+".vlan", "%d is out of range 1..4094 (leave it out for untagged)", n.VLAN)
			}
		}
		if n.Domain != "" && !nameRe.MatchString(n.Domain) {
			d.errorf(p+".domain", "%q is not a valid domain name (letters, digits, '.', '_' and '-', at most 63)", n.Domain)
		}
		switch {
		case len(n.Uplinks) == 0:
			d.errorf(p+".uplinks", "required: one NIC, or two to bond")
			continue
		case len(n.Uplinks) > 2:
			d.errorf(p+".uplinks", "%d uplinks, want one, or two to bond", len(n.Uplinks))
			continue
		}
		var valid []int // indexes of the uplinks to check further
		for j, u := range n.Uplinks {
			up := index(p+".uplinks", j) + ".mac"
			switch {
			case !d.checkMAC(up, u.MAC):
			case slices.Contains(sets[i], u.MAC):
				d.errorf(up, "%s is listed twice", u.MAC)
			default:
				sets[i] = append(sets[i], u.MAC)
				valid = append(valid, j)
			}
		}
		slices.Sort(sets[i])
		for _, j := range valid {
			up, mac := index(p+".uplinks", j)+".mac", n.Uplinks[j].MAC
			if o, ok := firstUse[mac]; !ok {
				firstUse[mac] = i
			} else if !slices.Equal(sets[o], sets[i]) {
				d.errorf(up, "%s is also an uplink of networks[%d] (%s) with other uplinks; networks sharing a NIC must share all their uplinks", mac, o, c.Networks[o].Name)
				continue
			}
			k := macVLAN{mac, n.VLAN}
			o, ok := onVLAN[k]
			switch {
			case !ok:
				onVLAN[k] = i
			case n.VLAN == 0:
				d.errorf(up, "%s is also an uplink of networks[%d] (%s), both untagged", mac, o, c.Networks[o].Name)
			default:
				d.errorf(up, "%s is also an uplink of networks[%d] (%s) on the same VLAN %d", mac, o, c.Networks[o].Name, n.VLAN)
			}
		}
	}
	if mac := c.Management.NIC.MAC; mac != "" {
		if o, ok := firstUse[mac]; ok {
			d.errorf("management.nic.mac", "%s is also an uplink of networks[%d] (%s)", mac, o, c.Networks[o].Name)
		}
	}
}

func (d *decoder) checkResources(c *Config) {
	r := c.Resources
	if r.Host.Memory < 0 {
		d.errorf("resources.host.memory", "must not be negative")
	}
	if r.Host.CPUs < 0 {
		d.errorf("resources.host.cpus", "must not be negative")
	}
	if r.Reserve.CPUs < 0 {
		d.errorf("resources.reserve.cpus", "must be at least 1: the host needs a CPU of its own")
	}
	if r.Host.Memory > 0 && r.Reserve.Memory >= r.Host.Memory {
		d.errorf("resources.reserve.memory", "%s is not smaller than resources.host.memory %s", r.Reserve.Memory, r.Host.Memory)
	}
	if r.Host.CPUs > 0 && r.Reserve.CPUs >= r.Host.CPUs {
		d.errorf("resources.reserve.cpus", "%d is not smaller than resources.host.cpus %d", r.Reserve.CPUs, r.Host.CPUs)
	}
}

func (d *decoder) checkName(path, name string) {
	switch {
	case name == "":
		d.errorf(path, "required")
	case !nameRe.MatchString(name):
		d.errorf(path, "%q is not a valid name (letters, digits, '.', '_' and '-', at most 63)", name)
	}
}

func (d *decoder) checkCPUs(path string, n int) {
	if n < 1 || n > maxGuestCPUs {
		d.errorf(path, "%d is out of range 1..%d", n, maxGuestCPUs)
	}
}

func (d *decoder) checkMemory(path string, m Size) {
	if m < minGuestMemory {
		d.errorf(path, "%s is below the minimum %s", m, minGuestMemory)
	}
}

func (d *decoder) checkTemplates(c *Config) {
	names := map[string]int{}
	for i, t := range c.Templates {
		p := index("templates", i)
		d.checkName(p+".name", t.Name)
		if t.Name != "" {
			if j, dup := names[t.Name]; dup {
				d.errorf(p+".name", "%q is also the name of templates[%d]", t.Name, j)
			} else {
				names[t.Name] = i
			}
		}
		if !d.has(p + ".cpus") {
			d.errorf(p+".cpus", "required")
		} else {
			d.checkCPUs(p+".cpus", t.CPUs)
		}
		if !d.has(p + ".memory") {
			d.errorf(p+".memory", "required")
		} else {
			d.checkMemory(p+".memory", t.Memory)
		}
		if t.Disk < 0 {
			d.errorf(p+".disk", "must not be negative")
		}
		l := t.Limits
		if (l.CPU != 0 || d.has(p+".limits.cpu")) && t.CPUs >= 1 && t.CPUs <= maxGuestCPUs {
			if limit := Percent(100 * t.CPUs); l.CPU < 1 || l.CPU > limit {
				d.errorf(p+".limits.cpu", "%s is out of range 1%%..%s for %d cpus", l.CPU, limit, t.CPUs)
			}
		}
		if l.CPUWeight != 0 && (l.CPUWeight < 1 || l.CPUWeight > 10000) {
			d.errorf(p+".limits.cpuWeight", "%d is out of range 1..10000", l.CPUWeight)
		}
		if l.Memory != 0 && d.has(p+".memory") && l.Memory < t.Memory {
			d.errorf(p+".limits.memory", "%s is below the template's memory %s", l.Memory, t.Memory)
		}
		if l.IOPS < 0 {
			d.errorf(p+".limits.iops", "must not be negative")
		}
		if t.Image != "" {
			d.checkPath(p+".image", t.Image)
		}
		if l.PIDs < 0 {
			d.errorf(p+".limits.pids", "must not be negative")
		}
	}
}

func (d *decoder) checkGuests(c *Config) {
	templates := map[string]*Template{}
	for i := range c.Templates {
		if _, dup := templates[c.Templates[i].Name]; !dup {
			templates[c.Templates[i].Name] = &c.Templates[i]
		}
	}
	networks := map[string]*Network{}
	domains := map[string]bool{}
	for i := range c.Networks {
		n := &c.Networks[i]
		if _, dup := networks[n.Name]; !dup {
			networks[n.Name] = n
		}
		if n.Domain != "" {
			domains[n.Domain] = true
		}
	}

	r := c.Resources
	memBudget, cpuBudget := r.Host.Memory-r.Reserve.Memory, r.Host.CPUs-r.Reserve.CPUs
	checkMem := r.Host.Memory > 0 && memBudget > 0
	checkCPU := r.Host.CPUs > 0 && cpuBudget > 0
	var memTotal Size
	var cpuTotal int

	names := map[string]int{}
	for i, g := range c.Guests {
		p := index("guests", i)
		d.checkName(p+".name", g.Name)
		if g.Name != "" {
			if j, dup := names[g.Name]; dup {
				d.errorf(p+".name", "%q is also the name of guests[%d]", g.Name, j)
			} else {
				names[g.Name] = i
			}
		}

		t := templates[g.Template]
		switch {
		case g.Template == "":
			d.errorf(p+".template", "required")
		case t == nil:
			d.errorf(p+".template", "unknown template %q", g.Template)
		}
		n := networks[g.Network]
		switch {
		case g.Network == "":
			d.errorf(p+".network", "required")
		case n == nil:
			d.errorf(p+".network", "unknown network %q", g.Network)
		}
		if g.Domain != "" {
			switch {
			case !nameRe.MatchString(g.Domain):
				d.errorf(p+".domain", "%q is not a valid domain name (letters, digits, '.', '_' and '-', at most 63)", g.Domain)
			case !domains[g.Domain]:
				d.errorf(p+".domain", "unknown domain %q: no network declares it", g.Domain)
			case n != nil && n.Domain != "" && n.Domain != g.Domain:
				d.errorf(p+".domain", "%q differs from domain %q of network %s", g.Domain, n.Domain, n.Name)
			}
		}

		var cpus int
		var mem Size
		if t != nil {
			cpus, mem = t.CPUs, t.Memory
		}
		if g.CPUs != nil {
			cpus = *g.CPUs
			d.checkCPUs(p+".cpus", cpus)
			if t != nil && t.Limits.CPU > Percent(100*min(max(cpus, 0), maxGuestCPUs)) {
				d.errorf(p+".cpus", "%d cpus is less than the cpu limit %s of template %s", cpus, t.Limits.CPU, t.Name)
			}
		}
		if g.Memory != nil {
			mem = *g.Memory
			d.checkMemory(p+".memory", mem)
			if t != nil && t.Limits.Memory != 0 && t.Limits.Memory < mem {
				d.errorf(p+".memory", "%s is more than the memory ceiling %s of template %s", mem, t.Limits.Memory, t.Name)
			}
		}
		if g.Image != "" {
			d.checkPath(p+".image", g.Image)
		}
		if g.MAC != "" {
			switch hw, err := net.ParseMAC(g.MAC); {
			case !macRe.MatchString(g.MAC) || err != nil:
				d.errorf(p+".mac", "%q is not a MAC address such as 52:54:00:12:34:56", g.MAC)
			case hw[0]&1 == 1:
				d.errorf(p+".mac", "%s is a multicast address", g.MAC)
			}
		}
		for j, a := range g.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				d.errorf(fmt.Sprintf("%s.addresses[%d]", p, j), "%q is not an IP address", a)
			}
		}
		// The budget counts each guest's memory ceiling: its RAM and what
		// QEMU may use beside it.
		if mem > 0 {
			if t != nil && t.Limits.Memory != 0 {
				mem = t.Limits.Memory
			} else {
				mem = addSat(mem, GuestOverhead)
			}
		}

		// Report the guest that crosses the line, once.
		if checkMem && mem > 0 {
			if mem > memBudget-memTotal {
				d.errorf(p+".memory", "guests total %s exceeds host budget %s (%s host - %s reserve)", addSat(memTotal, mem), memBudget, r.Host.Memory, r.Reserve.Memory)
				checkMem = false
			}
			memTotal += mem
		}
		if checkCPU && cpus > 0 && cpus <= maxGuestCPUs {
			if cpus > cpuBudget-cpuTotal {
				d.errorf(p+".cpus", "guests total %d cpus exceeds host budget %d (%d host - %d reserve)", cpuTotal+cpus, cpuBudget, r.Host.CPUs, r.Reserve.CPUs)
				checkCPU = false
			}
			cpuTotal += cpus
		}
	}
}

// addSat adds sizes, stopping at the largest.
func addSat(a, b Size) Size {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (d *decoder) checkUpdates(c *Config) {
	u := c.Updates
	if u.Repository != "" {
		r, err := url.Parse(u.Repository)
		if err != nil || (r.Scheme != "https" && r.Scheme != "http") || r.Hostname() == "" || r.User != nil || r.Opaque != "" || r.Fragment != "" || !validPort(r.Port()) {
			d.errorf("updates.repository", "%q is not an http(s) URL such as https://updates.example/hardvisor", u.Repository)
		}
		if u.TrustedRoot == "" {
			d.errorf("updates.trustedRoot", "required with updates.repository")
		}
	}
	if u.TrustedRoot != "" {
		d.checkPath("updates.trustedRoot", u.TrustedRoot)
	}
	if w := u.Reboot.Window; w != "" {
		m := windowRe.FindStringSubmatch(w)
		switch {
		case m == nil:
			d.errorf("updates.reboot.window", "%q is not DAY HH:MM-HH:MM, DAY one of Mon..Sun or daily, such as \"Sun 02:00-04:00\"", w)
		case m[2] == m[4] && m[3] == m[5]:
			d.errorf("updates.reboot.window", "%q is empty: it starts when it ends", w)
		}
	}
}

func (d *decoder) checkSecurity(c *Config) {
	s := c.Security
	switch s.SELinux {
	case SELinuxEnforcing:
	case SELinuxPermissive:
		if c.Profile == ProfileProduction {
			d.errorf("security.selinux", "permissive is not allowed in the production profile")
		}
	default:
		d.errorf("security.selinux", "unknown mode %q, want enforcing or permissive", s.SELinux)
	}
	if s.Lockdown != LockdownIntegrity && s.Lockdown != LockdownConfidentiality {
		d.errorf("security.lockdown", "unknown mode %q, want integrity or confidentiality", s.Lockdown)
	}
}

func (d *decoder) checkKernel(c *Config) {
	seen := map[string]int{}
	for i, m := range c.Kernel.Modules {
		p := index("kernel.modules", i)
		if !moduleRe.MatchString(m) {
			d.errorf(p, "%q is not a module name such as virtio_net", m)
			continue
		}
		// The kernel treats '-' and '_' in module names alike.
		key := strings.ReplaceAll(m, "-", "_")
		if j, dup := seen[key]; dup {
			d.errorf(p, "%s is also kernel.modules[%d]", m, j)
		} else {
			seen[key] = i
		}
	}
	for i, a := range c.Kernel.Cmdline {
		p := index("kernel.cmdline", i)
		switch key, _, _ := strings.Cut(a, "="); {
		case a == "--":
			d.errorf(p, "-- would hand the arguments after it to PID 1")
		case !cmdlineRe.MatchString(a) || strings.ContainsFunc(a, unicode.IsControl):
			d.errorf(p, "%q is not key or key=value without spaces or quotes", a)
		case c.Profile == ProfileProduction && slices.Contains(reservedCmdline, key):
			d.errorf(p, "%s is set by hardvisor and may not be changed in the production profile", key)
		}
	}
}

func (d *decoder) checkServices(c *Config) {
	names := map[string]int{}
	for i, s := range c.Services {
		p := index("services", i)
		d.checkName(join(p, "name"), s.Name)
		if j, dup := names[s.Name]; dup && s.Name != "" {
			d.errorf(join(p, "name"), "%q is also services[%d]", s.Name, j)
		} else {
			names[s.Name] = i
		}
	}
	var reserved Size
	for i, s := range c.Services {
		p := index("services", i)
		d.checkCommand(join(p, "command"), s.Command, true)
		for j, e := range s.Env {
			if !envRe.MatchString(e) || strings.ContainsRune(e, 0) {
				d.errorf(index(join(p, "env"), j), "%q is not KEY=value", e)
			}
		}
		for _, field := range []string{"after", "requires"} {
			list := s.After
			if field == "requires" {
				list = s.Requires
			}
			for j, dep := range list {
				dp := index(join(p, field), j)
				if _, ok := names[dep]; !ok {
					d.errorf(dp, "unknown service %q", dep)
				} else if dep == s.Name {
					d.errorf(dp, "a service cannot depend on itself")
				}
			}
		}
		switch s.Restart {
		case RestartAlways, RestartOnFailure, RestartNever:
		default:
			d.errorf(join(p, "restart"), "unknown policy %q, want always, on-failure or never", s.Restart)
		}
		d.checkProbe(join(p, "ready"), s.Ready)
		d.checkProbe(join(p, "health"), s.Health)
		if s.User != "" && !userRe.MatchString(s.User) {
			d.errorf(join(p, "user"), "%q is not UID:GID, such as 1000:1000", s.User)
		}
		for j, cp := range s.Capabilities {
			if !capRe.MatchString(cp) {
				d.errorf(index(join(p, "capabilities"), j), "%q is not a capability name such as net_bind_service", cp)
			}
		}
		l, lp := s.Limits, join(p, "limits")
		switch {
		case l.MemoryMin < 0:
			d.errorf(join(lp, "memoryMin"), "must not be negative")
		case l.MemoryMax < 0:
			d.errorf(join(lp, "memoryMax"), "must not be negative")
		case l.MemoryMax > 0 && l.MemoryMin > l.MemoryMax:
			d.errorf(join(lp, "memoryMin"), "%s exceeds memoryMax %s", l.MemoryMin, l.MemoryMax)
		}
		if l.CPUWeight < 0 || l.CPUWeight > 10000 {
			d.errorf(join(lp, "cpuWeight"), "%d is out of range 1..10000", l.CPUWeight)
		}
		if l.PIDs < 0 {
			d.errorf(join(lp, "pids"), "must not be negative")
		}
		if l.MemoryMin > 0 {
			reserved = addSat(reserved, l.MemoryMin)
		}
		if s.Breaker.Restarts < 0 {
			d.errorf(join(p, "breaker.restarts"), "must not be negative")
		}
		if b := s.Backoff; b.Max > 0 && b.Initial > b.Max {
			d.errorf(join(p, "backoff.initial"), "%s exceeds backoff.max %s", b.Initial, b.Max)
		}
	}
	if reserved > c.Resources.Reserve.Memory {
		d.errorf("services", "the services reserve %s of memory (limits.memoryMin), more than resources.reserve.memory %s",
			reserved, c.Resources.Reserve.Memory)
	}
}

// checkCommand checks an argv: not empty, the program an absolute path.
func (d *decoder) checkCommand(path string, argv []string, required bool) {
	switch {
	case len(argv) == 0:
		if required {
			d.errorf(path, "required")
		}
	case !strings.HasPrefix(argv[0], "/") || strings.Contains(argv[0], "/../") || strings.HasSuffix(argv[0], "/"):
		d.errorf(index(path, 0), "%q is not an absolute path to a program", argv[0])
	}
	for j, a := range argv {
		if strings.ContainsRune(a, 0) {
			d.errorf(index(path, j), "contains a NUL byte")
		}
	}
}

func (d *decoder) checkProbe(path string, p *Probe) {
	if p == nil {
		return
	}
	n := 0
	if len(p.Exec) > 0 {
		n++
		d.checkCommand(join(path, "exec"), p.Exec, false)
	}
	if p.TCP != 0 {
		n++
		if p.TCP < 1 || p.TCP > 65535 {
			d.errorf(join(path, "tcp"), "%d is out of range 1..65535", p.TCP)
		}
	}
	if p.File != "" {
		n++
		if !strings.HasPrefix(p.File, "/") {
			d.errorf(join(path, "file"), "%q is not an absolute path", p.File)
		}
	}
	if n != 1 {
		d.errorf(path, "set exactly one of exec, tcp and file")
	}
	if p.Failures < 0 {
		d.errorf(join(path, "failures"), "must not be negative")
	}
}
