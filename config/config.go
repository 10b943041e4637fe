// Package config is the hardvisor appliance config: its types, a strict
// loader that reports every problem with its field path and line, the
// defaults, and the embedded default config.
//
// The builder parses the admin's file on the build host and bakes the
// normalized form (Marshal) into the image; PID 1 parses that again at boot
// and picks its hosts[] section with ForHost. Parsing is pure: only Load
// touches the file system.
package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersion is the only apiVersion this package reads.
const APIVersion = "hardvisor.dev/v1"

// Profiles.
const (
	// ProfileProduction is the default: no shell, no debug tools.
	ProfileProduction = "production"
	// ProfileDebug adds core tools and a shell on the serial console.
	ProfileDebug = "debug"
)

// SELinux modes.
const (
	// SELinuxEnforcing is the default, and the only mode production allows.
	SELinuxEnforcing = "enforcing"
	// SELinuxPermissive logs denials without enforcing them.
	SELinuxPermissive = "permissive"
)

// Kernel lockdown modes.
const (
	// LockdownIntegrity is the default: nothing may modify the running kernel.
	LockdownIntegrity = "integrity"
	// LockdownConfidentiality also keeps kernel memory from being read.
	LockdownConfidentiality = "confidentiality"
)

// DataDir is where the host mounts its data partition (HV-DATA), the one
// place its state survives a reboot and an image swap.
const DataDir = "/var/lib/hardvisor"

// AddressDHCP is the management address that asks DHCP for one.
const AddressDHCP = "dhcp"

// Config is a whole appliance config. Parse returns it with the defaults
// applied; fields documented with a default hold it after Parse.
type Config struct {
	// APIVersion must be APIVersion.
	APIVersion string `yaml:"apiVersion"`
	// Version is the image version, MAJOR.MINOR.PATCH[-PRERELEASE].
	Version string `yaml:"version"`
	// Profile is ProfileProduction (default) or ProfileDebug.
	Profile string `yaml:"profile"`
	// Host is the machine's identity.
	Host Host `yaml:"host"`
	// Hosts are per-machine overrides, matched at boot by MAC; see ForHost.
	Hosts []HostOverride `yaml:"hosts,omitempty"`
	// Management is the management NIC and the services on it.
	Management Management `yaml:"management"`
	// Networks are the guest networks.
	Networks []Network `yaml:"networks,omitempty"`
	// Resources is the machine's size and what is kept for the host.
	Resources Resources `yaml:"resources"`
	// Templates are guest shapes.
	Templates []Template `yaml:"templates,omitempty"`
	// Guests are the virtual machines.
	Guests []Guest `yaml:"guests,omitempty"`
	// Updates says where images come from and when to reboot into them.
	Updates Updates `yaml:"updates,omitempty"`
	// Security is the mandatory access control and lockdown settings.
	Security Security `yaml:"security"`
	// Kernel is the module allow-list and extra kernel arguments.
	Kernel Kernel `yaml:"kernel"`
	// Services are host services the config adds to the built-in ones.
	Services []Service `yaml:"services,omitempty"`
}

// Host is the machine's identity.
type Host struct {
	// Hostname is an RFC 1123 label; default "hardvisor".
	Hostname string `yaml:"hostname"`
	// Timezone is a tz database name; default "UTC".
	Timezone string `yaml:"timezone"`
	// Console is the serial console device; default "ttyS0".
	Console string `yaml:"console"`
	// ReadyTimeout is how long PID 1 waits for the health gate (every
	// required service ready, every hardening check passed) before it
	// reports the host not ready; default 2m.
	ReadyTimeout Duration `yaml:"readyTimeout"`
}

// HostOverride is a hosts[] entry: settings for the machine one of whose
// NICs has Match.MAC. Empty fields override nothing.
type HostOverride struct {
	// Match selects the machine.
	Match HostMatch `yaml:"match"`
	// Hostname replaces host.hostname.
	Hostname string `yaml:"hostname,omitempty"`
	// Management replaces the management settings it sets.
	Management HostManagement `yaml:"management,omitempty"`
}

// HostMatch selects a machine.
type HostMatch struct {
	// MAC is the address of any of the machine's NICs, lower case.
	MAC string `yaml:"mac"`
}

// HostManagement is the part of Management a hosts[] entry may override.
type HostManagement struct {
	// Address replaces management.address.
	Address string `yaml:"address,omitempty"`
	// Gateway replaces management.gateway.
	Gateway string `yaml:"gateway,omitempty"`
	// DNS replaces management.dns when not empty.
	DNS []string `yaml:"dns,omitempty"`
}

// Management is the management NIC, which PID 1 moves into a network
// namespace of its own, and the services that listen on it.
type Management struct {
	// NIC selects the management NIC.
	NIC NIC `yaml:"nic,omitempty"`
	// Address is AddressDHCP (default) or an address in CIDR form.
	Address string `yaml:"address"`
	// Gateway is the default route's IP address; optional.
	Gateway string `yaml:"gateway,omitempty"`
	// DNS are name server IP addresses.
	DNS []string `yaml:"dns,omitempty"`
	// API is the management API.
	API API `yaml:"api"`
	// Syslog is where logs are forwarded, a tcp://, tls:// or udp:// URL; optional.
	Syslog string `yaml:"syslog,omitempty"`
}

// NIC selects a network interface.
type NIC struct {
	// MAC is its address, lower case; empty means the first Ethernet NIC by
	// PCI address.
	MAC string `yaml:"mac,omitempty"`
}

// API is the management API's listener.
type API struct {
	// Port is the HTTPS port, 1..65535; default 8443.
	Port int `yaml:"port"`
	// ClientCA is the path of the CA certificate client certificates must
	// chain to (hardvisor pki init); setting it turns the management API on.
	// Relative paths are relative to the config file.
	ClientCA string `yaml:"clientCA,omitempty"`
	// ServerCert and ServerKey are the API's certificate and key (hardvisor
	// pki issue --server); required with ClientCA. The build embeds them.
	ServerCert string `yaml:"serverCert,omitempty"`
	ServerKey  string `yaml:"serverKey,omitempty"`
}

// Network is a guest network: a bridge on one NIC, or on two bonded NICs,
// optionally on a VLAN.
type Network struct {
	// Name is a DNS label, unique among networks.
	Name string `yaml:"name"`
	// Uplinks are the NICs, one or two; two are bonded.
	Uplinks []Uplink `yaml:"uplinks"`
	// VLAN is the 802.1Q tag, 1..4094; 0 means untagged.
	VLAN int `yaml:"vlan,omitempty"`
	// Domain is the security domain the network belongs to; optional.
	Domain string `yaml:"domain,omitempty"`
}

// Uplink is a NIC carrying a network.
type Uplink struct {
	// MAC is the NIC's address, lower case.
	MAC string `yaml:"mac"`
}

// Resources is the machine's size and the share kept for the host.
type Resources struct {
	// Host is the machine's size as the admin declares it; zero fields are
	// unknown and skip the budget check.
	Host Capacity `yaml:"host,omitempty"`
	// Reserve is kept for the host; default 1Gi and 1 CPU.
	Reserve Capacity `yaml:"reserve"`
}

// Capacity is an amount of memory and CPUs.
type Capacity struct {
	// Memory in bytes.
	Memory Size `yaml:"memory"`
	// CPUs is a count of logical CPUs.
	CPUs int `yaml:"cpus"`
}

// Template is a guest shape.
type Template struct {
	// Name is unique among templates.
	Name string `yaml:"name"`
	// CPUs is the vCPU count, at least 1.
	CPUs int `yaml:"cpus"`
	// Memory is the guest's RAM, at least 16Mi.
	Memory Size `yaml:"memory"`
	// Disk is the size of the guest's disk; 0 means none unless Image is set.
	Disk Size `yaml:"disk,omitempty"`
	// Image is a raw disk image (path relative to the config file) that the
	// build puts into the boot image and the host copies to a guest's disk on
	// its first start, grown to Disk when that is larger.
	Image string `yaml:"image,omitempty"`
	// Limits are the cgroup ceilings.
	Limits Limits `yaml:"limits,omitempty"`
}

// Limits are a guest's cgroup ceilings; zero fields are unlimited.
type Limits struct {
	// CPU is the CPU time ceiling (cpu.max), 1% up to CPUs*100%.
	CPU Percent `yaml:"cpu,omitempty"`
	// CPUWeight is the guest's share under contention (cpu.weight), 1..10000;
	// default 100.
	CPUWeight int `yaml:"cpuWeight,omitempty"`
	// Memory is the hard ceiling on the guest's whole QEMU process
	// (memory.max): guest RAM plus QEMU's own use. Default: the guest's
	// memory plus GuestOverhead.
	Memory Size `yaml:"memory,omitempty"`
	// IOPS caps disk operations per second (io.max riops and wiops).
	IOPS int `yaml:"iops,omitempty"`
	// Bandwidth caps disk bytes per second (io.max rbps and wbps).
	Bandwidth Size `yaml:"bandwidth,omitempty"`
	// PIDs caps the guest's process count (QEMU's threads).
	PIDs int `yaml:"pids,omitempty"`
}

// Guest is a virtual machine.
type Guest struct {
	// Name is unique among guests.
	Name string `yaml:"name"`
	// Template names the guest's template.
	Template string `yaml:"template"`
	// Network names the guest's network.
	Network string `yaml:"network"`
	// Autostart starts the guest at boot.
	Autostart bool `yaml:"autostart,omitempty"`
	// CPUs overrides the template's when set.
	CPUs *int `yaml:"cpus,omitempty"`
	// Memory overrides the template's when set.
	Memory *Size `yaml:"memory,omitempty"`
	// Image overrides the template's disk image when set.
	Image string `yaml:"image,omitempty"`
	// MAC is the guest NIC's address, lower case; default one derived from
	// the guest's name (52:54:00 and three bytes of its hash).
	MAC string `yaml:"mac,omitempty"`
	// Addresses are the IP addresses the guest may send from; empty allows
	// any (the MAC is enforced either way).
	Addresses []string `yaml:"addresses,omitempty"`
	// Domain is the guest's security domain: one a network declares, and
	// its network's if that has one.
	Domain string `yaml:"domain,omitempty"`
}

// Updates says where new images come from and when to reboot into them.
type Updates struct {
	// Repository is the TUF repository's http(s) URL; optional.
	Repository string `yaml:"repository,omitempty"`
	// TrustedRoot is the path of the TUF root metadata baked into the image;
	// required with Repository.
	TrustedRoot string `yaml:"trustedRoot,omitempty"`
	// Reboot says when the host may reboot into an update.
	Reboot Reboot `yaml:"reboot,omitempty"`
}

// Reboot says when the host may reboot into an update.
type Reboot struct {
	// Window is "DAY HH:MM-HH:MM", DAY one of Mon..Sun or "daily", as in
	// "Sun 02:00-04:00"; it may cross midnight. Empty means reboot only when told.
	Window string `yaml:"window,omitempty"`
}

// Security is the mandatory access control and lockdown settings.
type Security struct {
	// SELinux is SELinuxEnforcing (default) or SELinuxPermissive.
	SELinux string `yaml:"selinux"`
	// Lockdown is LockdownIntegrity (default) or LockdownConfidentiality.
	Lockdown string `yaml:"lockdown"`
}

// Kernel is the module allow-list and extra kernel arguments.
type Kernel struct {
	// Modules are the modules PID 1 may load before it disables loading;
	// when unset, the embedded default config's list.
	Modules []string `yaml:"modules"`
	// Cmdline are arguments appended to the built-in hardening ones, each
	// "key" or "key=value".
	Cmdline []string `yaml:"cmdline,omitempty"`
}

// Restart policies of a service.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Service is a host service: a program PID 1's service manager runs in a
// cgroup of its own (hardvisor.slice/<name>). A command that the image does
// not already carry is copied from the build host with its libraries.
type Service struct {
	// Name is unique among services; it names the cgroup.
	Name string `yaml:"name"`
	// Command is the program, an absolute path, and its arguments.
	Command []string `yaml:"command"`
	// Env adds "KEY=value" entries to the service's environment.
	Env []string `yaml:"env,omitempty"`
	// After are services this one starts after (ordering only).
	After []string `yaml:"after,omitempty"`
	// Requires are services this one needs ready; it fails if one fails.
	Requires []string `yaml:"requires,omitempty"`
	// NeedsData holds the service back until the data partition is mounted.
	NeedsData bool `yaml:"needsData,omitempty"`
	// Restart is RestartAlways (default), RestartOnFailure or RestartNever.
	Restart string `yaml:"restart"`
	// Optional leaves the service out of the health gate.
	Optional bool `yaml:"optional,omitempty"`
	// Ready tells when the service is ready; unset means once started.
	Ready *Probe `yaml:"ready,omitempty"`
	// Health is checked periodically once the service is ready.
	Health *Probe `yaml:"health,omitempty"`
	// User is "UID:GID" to run as; default root with capabilities as set.
	User string `yaml:"user,omitempty"`
	// Capabilities are the capabilities the service keeps ("net_bind_service");
	// unset keeps all, an empty list drops all.
	Capabilities []string `yaml:"capabilities,omitempty"`
	// Limits are the service's cgroup settings.
	Limits ServiceLimits `yaml:"limits,omitempty"`
	// Backoff spaces restarts.
	Backoff Backoff `yaml:"backoff,omitempty"`
	// Breaker stops a crash loop.
	Breaker Breaker `yaml:"breaker,omitempty"`
	// StopTimeout is how long the service has after SIGTERM before it is
	// killed; default 10s.
	StopTimeout Duration `yaml:"stopTimeout,omitempty"`
}

// Probe is a readiness or health check: exactly one of Exec, TCP and File.
type Probe struct {
	// Exec runs a command (absolute path and arguments); exit 0 passes.
	Exec []string `yaml:"exec,omitempty"`
	// TCP passes when the service listens on this port.
	TCP int `yaml:"tcp,omitempty"`
	// File passes when this path exists.
	File string `yaml:"file,omitempty"`
	// Interval is the time between checks; default 1s (ready), 10s (health).
	Interval Duration `yaml:"interval,omitempty"`
	// Timeout bounds one check; default 5s.
	Timeout Duration `yaml:"timeout,omitempty"`
	// Failures is the count of failed health checks in a row that restart
	// the service; default 3.
	Failures int `yaml:"failures,omitempty"`
}

// ServiceLimits are a host service's cgroup settings; zero fields take the
// service manager's defaults (no reservation, 512Mi, weight 100, 1024 tasks).
type ServiceLimits struct {
	// MemoryMin is memory.min, memory never reclaimed from the service; the
	// services' total must fit in resources.reserve.memory.
	MemoryMin Size `yaml:"memoryMin,omitempty"`
	// MemoryMax is memory.max, beyond which the service is OOM-killed.
	MemoryMax Size `yaml:"memoryMax,omitempty"`
	// CPUWeight is cpu.weight, 1..10000.
	CPUWeight int `yaml:"cpuWeight,omitempty"`
	// PIDs is pids.max, the ceiling on the service's tasks.
	PIDs int `yaml:"pids,omitempty"`
}

// Backoff is capped exponential backoff between restarts; zero fields take
// the defaults (100ms doubling up to 10s, reset after 30s of stable run).
type Backoff struct {
	Initial    Duration `yaml:"initial,omitempty"`
	Max        Duration `yaml:"max,omitempty"`
	ResetAfter Duration `yaml:"resetAfter,omitempty"`
}

// Breaker marks a service failed once it would restart more than Restarts
// times within Window; zero fields take the defaults (5 in 1m).
type Breaker struct {
	Restarts int      `yaml:"restarts,omitempty"`
	Window   Duration `yaml:"window,omitempty"`
}

//go:embed default.yaml
var defaultYAML []byte

// Default is the embedded default config, the one an image is built from when
// no config is given.
func Default() []byte { return bytes.Clone(defaultYAML) }

var embedded = sync.OnceValue(func() *Config { return mustParseDefault(defaultYAML) })

// mustParseDefault parses a default config, which sets every list itself: it
// is where the default module list comes from.
func mustParseDefault(data []byte) *Config {
	c, err := parse("default.yaml", data, nil)
	if err == nil && c.Kernel.Modules == nil {
		err = Errors{{File: "default.yaml", Path: "kernel.modules", Msg: "required in the default config"}}
	}
	if err != nil {
		panic("config: embedded default.yaml is invalid:\n" + err.Error())
	}
	return c
}

// LoadDefault parses Default. It panics if the embedded file is invalid,
// which the package's tests rule out.
func LoadDefault() *Config { return embedded().clone() }

// defaultModules is the embedded default's module allow-list.
func defaultModules() []string { return LoadDefault().Kernel.Modules }

// Parse reads a config, applies the defaults and validates it. name is the
// file name errors carry. A non-nil error is an Errors holding every problem.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, defaultModules)
}

// Load reads the config file at path and parses it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data)
}

// Marshal gives the config as normalized YAML: defaults applied, MACs in lower
// case, fields in a fixed order. Parse of the result gives an equal Config.
// Marshal does not validate; Parse the result for that.
func (c *Config) Marshal() ([]byte, error) {
	n := c.clone()
	n.normalize(defaultModules)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return b.Bytes(), nil
}

// ForHost gives a copy of c with the first hosts[] entry whose MAC is one of
// macs applied (compared case-insensitively), or a plain copy when none
// matches. The copy keeps the hosts[] list.
func (c *Config) ForHost(macs []string) *Config {
	out := c.clone()
	for _, h := range c.Hosts {
		if h.Match.MAC == "" || !slices.ContainsFunc(macs, func(m string) bool { return strings.EqualFold(m, h.Match.MAC) }) {
			continue
		}
		if h.Hostname != "" {
			out.Host.Hostname = h.Hostname
		}
		if h.Management.Address != "" {
			out.Management.Address = h.Management.Address
		}
		if h.Management.Gateway != "" {
			out.Management.Gateway = h.Management.Gateway
		}
		if len(h.Management.DNS) > 0 {
			out.Management.DNS = slices.Clone(h.Management.DNS)
		}
		break
	}
	return out
}

// normalize applies the defaults to zero fields and lower-cases MACs.
// modules gives the default module list; nil leaves unset modules unset.
func (c *Config) normalize(modules func() []string) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Profile, ProfileProduction)
	def(&c.Host.Hostname, "hardvisor")
	def(&c.Host.Timezone, "UTC")
	def(&c.Host.Console, "ttyS0")
	if c.Host.ReadyTimeout == 0 {
		c.Host.ReadyTimeout = Duration(2 * time.Minute)
	}
	for i := range c.Services {
		def(&c.Services[i].Restart, RestartAlways)
	}
	def(&c.Management.Address, AddressDHCP)
	def(&c.Security.SELinux, SELinuxEnforcing)
	def(&c.Security.Lockdown, LockdownIntegrity)
	if c.Management.API.Port == 0 {
		c.Management.API.Port = 8443
	}
	if c.Resources.Reserve.Memory == 0 {
		c.Resources.Reserve.Memory = Gi
	}
	if c.Resources.Reserve.CPUs == 0 {
		c.Resources.Reserve.CPUs = 1
	}
	if c.Kernel.Modules == nil && modules != nil {
		c.Kernel.Modules = modules()
	}

	lower := func(s *string) {
		if macRe.MatchString(*s) {
			*s = strings.ToLower(*s)
		}
	}
	lower(&c.Management.NIC.MAC)
	for i := range c.Guests {
		lower(&c.Guests[i].MAC)
	}
	for i := range c.Hosts {
		lower(&c.Hosts[i].Match.MAC)
	}
	for i := range c.Networks {
		for j := range c.Networks[i].Uplinks {
			lower(&c.Networks[i].Uplinks[j].MAC)
		}
	}
}

// clone is a deep copy: nothing in it aliases c.
func (c *Config) clone() *Config {
	out := *c
	out.Hosts = slices.Clone(c.Hosts)
	for i := range out.Hosts {
		out.Hosts[i].Management.DNS = slices.Clone(out.Hosts[i].Management.DNS)
	}
	out.Management.DNS = slices.Clone(c.Management.DNS)
	out.Networks = slices.Clone(c.Networks)
	for i := range out.Networks {
		out.Networks[i].Uplinks = slices.Clone(out.Networks[i].Uplinks)
	}
	out.Templates = slices.Clone(c.Templates)
	out.Guests = slices.Clone(c.Guests)
	for i := range out.Guests {
		g := &out.Guests[i]
		if g.CPUs != nil {
			v := *g.CPUs
			g.CPUs = &v
		}
		if g.Memory != nil {
			v := *g.Memory
			g.Memory = &v
		}
		g.Addresses = slices.Clone(g.Addresses)
	}
	out.Services = slices.Clone(c.Services)
	for i := range out.Services {
		out.Services[i] = out.Services[i].clone()
	}
	out.Kernel.Modules = slices.Clone(c.Kernel.Modules)
	out.Kernel.Cmdline = slices.Clone(c.Kernel.Cmdline)
	return &out
}

func (s Service) clone() Service {
	s.Command = slices.Clone(s.Command)
	s.Env = slices.Clone(s.Env)
	s.After = slices.Clone(s.After)
	s.Requires = slices.Clone(s.Requires)
	s.Capabilities = slices.Clone(s.Capabilities)
	for _, p := range []**Probe{&s.Ready, &s.Health} {
		if *p != nil {
			q := **p
			q.Exec = slices.Clone(q.Exec)
			*p = &q
		}
	}
	return s
}
