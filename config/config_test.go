package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// designExample is the config of DESIGN.md section 3, verbatim.
const designExample = `apiVersion: hardvisor.dev/v1
version: 1.4.0                 # image version (semver); an update must be newer than what a host runs
profile: production            # or debug
host: {hostname: hv, timezone: UTC, console: ttyS0}
hosts:                         # per-host overrides, matched at boot by the MAC of any NIC
  - match: {mac: "52:54:00:aa:00:01"}
    hostname: hv01
    management: {address: 192.0.2.11/24}
management:
  nic: {mac: "52:54:00:aa:00:01"}      # default: first Ethernet NIC by PCI address
  address: dhcp                        # or a CIDR
  gateway: 192.0.2.1
  dns: [192.0.2.53]
  api: {port: 8443, clientCA: pki/ca.pem}
  syslog: tcp://logs.example:6514
networks:
  - name: prod
    uplinks: [{mac: "52:54:00:bb:00:01"}, {mac: "52:54:00:bb:00:02"}]   # two = bonded
    vlan: 100
resources:
  reserve: {memory: 1Gi, cpus: 1}      # kept for the host; guests share the rest
templates:
  - name: small
    cpus: 1
    memory: 512Mi
    disk: 8Gi
    limits: {cpu: 100%, iops: 2000, pids: 512}
guests:
  - name: web1
    template: small
    network: prod
    autostart: true
updates:
  repository: https://updates.example/hardvisor
  trustedRoot: keys/root.json
  reboot: {window: "Sun 02:00-04:00"}
`

// header is the two required lines; a test body after it starts on line 3.
const header = "apiVersion: hardvisor.dev/v1\nversion: 1.0.0\n"

// defaultModules as listed in default.yaml.
var wantModules = []string{
	"button", "evdev",
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "virtio_console", "virtio_rng",
	"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "tg3", "r8169",
	"ahci", "nvme", "sd_mod", "usb_storage", "uas", "xhci_pci", "ehci_pci",
	"kvm", "kvm_intel", "kvm_amd", "bridge", "8021q", "bonding", "tun", "vhost_net", "loop", "squashfs", "nf_tables",
	"vfat", "nls_cp437", "nls_iso8859_1", "ext4", "efivarfs",
}

func ptr[T any](v T) *T { return &v }

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("hv.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

// errorLines parses src and gives its errors, one string each.
func errorLines(t *testing.T, src string) []string {
	t.Helper()
	c, err := Parse("hv.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", c)
	}
	if c != nil {
		t.Errorf("Parse gave a config with its error")
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Error())
	}
	if got := strings.Join(out, "\n"); got != err.Error() {
		t.Errorf("Errors.Error() = %q, want the lines joined: %q", err.Error(), got)
	}
	return out
}

func TestParseDesignExample(t *testing.T) {
	c := mustParse(t, designExample)
	want := &Config{
		APIVersion: APIVersion,
		Version:    "1.4.0",
		Profile:    "production",
		Host:       Host{Hostname: "hv", Timezone: "UTC", Console: "ttyS0", ReadyTimeout: Duration(2 * time.Minute)},
		Hosts: []HostOverride{{
			Match:      HostMatch{MAC: "52:54:00:aa:00:01"},
			Hostname:   "hv01",
			Management: HostManagement{Address: "192.0.2.11/24"},
		}},
		Management: Management{
			NIC:     NIC{MAC: "52:54:00:aa:00:01"},
			Address: "dhcp",
			Gateway: "192.0.2.1",
			DNS:     []string{"192.0.2.53"},
			API:     API{Port: 8443, ClientCA: "pki/ca.pem"},
			Syslog:  "tcp://logs.example:6514",
		},
		Networks: []Network{{
			Name:    "prod",
			Uplinks: []Uplink{{MAC: "52:54:00:bb:00:01"}, {MAC: "52:54:00:bb:00:02"}},
			VLAN:    100,
		}},
		Resources: Resources{Reserve: Capacity{Memory: Gi, CPUs: 1}},
		Templates: []Template{{
			Name: "small", CPUs: 1, Memory: 512 * Mi, Disk: 8 * Gi,
			Limits: Limits{CPU: 100, IOPS: 2000, PIDs: 512},
		}},
		Guests: []Guest{{Name: "web1", Template: "small", Network: "prod", Autostart: true}},
		Updates: Updates{
			Repository:  "https://updates.example/hardvisor",
			TrustedRoot: "keys/root.json",
			Reboot:      Reboot{Window: "Sun 02:00-04:00"},
		},
		Security: Security{SELinux: "enforcing", Lockdown: "integrity"},
		Kernel:   Kernel{Modules: wantModules},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(design example) =\n%#v\nwant\n%#v", c, want)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, header)
	want := &Config{
		APIVersion: APIVersion,
		Version:    "1.0.0",
		Profile:    ProfileProduction,
		Host:       Host{Hostname: "hardvisor", Timezone: "UTC", Console: "ttyS0", ReadyTimeout: Duration(2 * time.Minute)},
		Management: Management{Address: AddressDHCP, API: API{Port: 8443}},
		Resources:  Resources{Reserve: Capacity{Memory: Gi, CPUs: 1}},
		Security:   Security{SELinux: SELinuxEnforcing, Lockdown: LockdownIntegrity},
		Kernel:     Kernel{Modules: wantModules},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(minimal) =\n%#v\nwant\n%#v", c, want)
	}

	// Null is absent, so defaults apply; an explicit empty module list stays empty.
	c = mustParse(t, header+"host: {hostname: ~}\nkernel: {modules: []}\nnetworks: []\n")
	if c.Host.Hostname != "hardvisor" {
		t.Errorf("hostname: ~ gave %q, want the default", c.Host.Hostname)
	}
	if c.Kernel.Modules == nil || len(c.Kernel.Modules) != 0 {
		t.Errorf("modules: [] gave %#v, want an empty list", c.Kernel.Modules)
	}
	if c.Networks != nil {
		t.Errorf("networks: [] gave %#v, want nil", c.Networks)
	}
	c = mustParse(t, header+"kernel: {modules: ~, cmdline: [quiet]}\n")
	if !slices.Equal(c.Kernel.Modules, wantModules) {
		t.Errorf("modules: ~ gave %v, want the default list", c.Kernel.Modules)
	}
}

func TestLoadDefault(t *testing.T) {
	c := LoadDefault()
	if c.Version != "0.1.0" || c.Profile != ProfileProduction || c.Host.Hostname != "hardvisor" ||
		c.Management.Address != AddressDHCP || c.Security.SELinux != SELinuxEnforcing {
		t.Errorf("LoadDefault() = %+v", c)
	}
	if !slices.Equal(c.Kernel.Modules, wantModules) {
		t.Errorf("default modules = %v\nwant %v", c.Kernel.Modules, wantModules)
	}
	// Each call is a fresh copy.
	c.Kernel.Modules[0] = "changed"
	if LoadDefault().Kernel.Modules[0] != "button" {
		t.Error("LoadDefault shares its module list between calls")
	}
	if _, err := Parse("default.yaml", Default()); err != nil {
		t.Errorf("Parse(Default()): %v", err)
	}
}

func TestLoadDefaultPanics(t *testing.T) {
	for _, src := range []string{header + "profile: dev\n", header + "kernel: {cmdline: [quiet]}\n"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("mustParseDefault(%q) did not panic", src)
				}
			}()
			mustParseDefault([]byte(src))
		}()
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hv.yaml")
	if err := os.WriteFile(path, []byte(header+"host: {hostnam: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:3: host: unknown field "hostnam" (did you mean "hostname"?)`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
	if err := os.WriteFile(path, []byte(designExample), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(path); err != nil || c.Host.Hostname != "hv" {
		t.Errorf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

// parseErrorCases are configs with the exact errors Parse must report; the
// fuzzer starts from them too.
var parseErrorCases = []struct {
	name string
	src  string
	want []string
}{
	// The document.
	{"empty", "", []string{"hv.yaml: empty config"}},
	{"comments only", "# nothing\n", []string{"hv.yaml: empty config"}},
	{"syntax", "apiVersion: hardvisor.dev/v1\nhost: [\n", []string{
		"hv.yaml:2: invalid YAML: did not find expected node content"}},
	{"two documents", header + "---\n" + header, []string{"hv.yaml:3: more than one YAML document"}},
	{"not a mapping", "- a\n", []string{"hv.yaml:1: expected a mapping, got a list"}},
	{"unknown field with anchor", header + "x: &x {hostname: a}\n", []string{`hv.yaml:3: unknown field "x"`}},
	{"merge", header + "host:\n  <<: {hostname: a}\n", []string{"hv.yaml:4: host: merge keys (<<) are not supported"}},

	// Strictness: unknown fields, duplicates, types.
	{"unknown field", header + "host:\n  hostnam: hv\n", []string{
		`hv.yaml:4: host: unknown field "hostnam" (did you mean "hostname"?)`}},
	{"unknown top-level field", header + "colour: []\n", []string{`hv.yaml:3: unknown field "colour"`}},
	{"duplicate field", header + "host:\n  hostname: a\n  hostname: b\n", []string{
		`hv.yaml:5: host: duplicate field "hostname" (first on line 4)`}},
	{"string expected", header + "host: {hostname: [a]}\n", []string{"hv.yaml:3: host.hostname: expected a string, got a list"}},
	{"mapping expected", header + "host: hv\n", []string{`hv.yaml:3: host: expected a mapping, got "hv"`}},
	{"list expected", header + "networks: {name: a}\n", []string{"hv.yaml:3: networks: expected a list, got a mapping"}},
	{"integer expected", header + "management: {api: {port: \"8443\"}}\n", []string{
		`hv.yaml:3: management.api.port: expected an integer, got "8443"`}},
	{"bool expected", header + "templates: [{name: t, cpus: 1, memory: 1Gi}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\n" +
		"guests: [{name: g, template: t, network: n, autostart: maybe}]\n", []string{
		`hv.yaml:5: guests[0].autostart: expected true or false, got "maybe"`}},
	{"null list item", header + "kernel: {modules: [a, ~]}\n", []string{"hv.yaml:3: kernel.modules[1]: empty list item"}},
	{"aliases", header + "a: &a [x, x, x, x, x, x, x, x, x, x]\n" +
		"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"kernel: {cmdline: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n", []string{
		`hv.yaml:3: unknown field "a"`, `hv.yaml:4: unknown field "b"`, `hv.yaml:5: unknown field "c"`, `hv.yaml:6: unknown field "d"`,
		`hv.yaml:7: kernel.cmdline[0]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[1]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[2]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[3]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[4]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[5]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[6]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[7]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[8]: expected a string, got a list`,
		`hv.yaml:7: kernel.cmdline[9]: expected a string, got a list`}},

	{"aliases are fine", header + "management:\n  dns: &dns [nope]\nhosts:\n  - match: {mac: \"52:54:00:aa:00:01\"}\n    management: {dns: *dns, gateway: *dns}\n", []string{
		`hv.yaml:4: hosts[0].management.dns[0]: "nope" is not an IP address`,
		`hv.yaml:4: management.dns[0]: "nope" is not an IP address`,
		"hv.yaml:7: hosts[0].management.gateway: expected a string, got a list"}},

	// Top level.
	{"apiVersion missing", "version: 1.0.0\n", []string{"hv.yaml:1: apiVersion: required (hardvisor.dev/v1)"}},
	{"apiVersion wrong", "apiVersion: hardvisor.dev/v2\nversion: 1.0.0\n", []string{
		`hv.yaml:1: apiVersion: unsupported "hardvisor.dev/v2", want "hardvisor.dev/v1"`}},
	{"version missing", "apiVersion: hardvisor.dev/v1\n", []string{
		"hv.yaml:1: version: required (semantic version, such as 1.0.0)"}},
	{"version not semver", "apiVersion: hardvisor.dev/v1\nversion: 1.4\n", []string{
		`hv.yaml:2: version: "1.4" is not a semantic version MAJOR.MINOR.PATCH[-PRERELEASE]`}},
	{"version leading zero", "apiVersion: hardvisor.dev/v1\nversion: 1.04.0\n", []string{
		`hv.yaml:2: version: "1.04.0" is not a semantic version MAJOR.MINOR.PATCH[-PRERELEASE]`}},
	{"version build metadata", "apiVersion: hardvisor.dev/v1\nversion: 1.4.0+abc\n", []string{
		`hv.yaml:2: version: "1.4.0+abc" is not a semantic version MAJOR.MINOR.PATCH[-PRERELEASE]`}},
	{"profile", header + "profile: dev\n", []string{`hv.yaml:3: profile: unknown profile "dev", want production or debug`}},
	{"hostname", header + "host: {hostname: hv_1}\n", []string{
		`hv.yaml:3: host.hostname: "hv_1" is not a valid hostname (RFC 1123 label: letters, digits and inner '-', at most 63)`}},
	{"timezone", header + "host: {timezone: ../etc/passwd}\n", []string{
		`hv.yaml:3: host.timezone: "../etc/passwd" is not a time zone name such as UTC or Europe/Berlin`}},
	{"console", header + "host: {console: \"ttyS0,115200\"}\n", []string{
		`hv.yaml:3: host.console: "ttyS0,115200" is not a console device name such as ttyS0`}},

	// hosts[].
	{"hosts mac missing", header + "hosts: [{hostname: a}]\n", []string{"hv.yaml:3: hosts[0].match.mac: required"}},
	{"hosts mac invalid", header + "hosts: [{match: {mac: 52-54-00-aa-00-01}}]\n", []string{
		`hv.yaml:3: hosts[0].match.mac: "52-54-00-aa-00-01" is not a MAC address xx:xx:xx:xx:xx:xx`}},
	{"hosts mac duplicate", header + "hosts:\n  - match: {mac: \"52:54:00:aa:00:01\"}\n  - match: {mac: \"52:54:00:AA:00:01\"}\n", []string{
		"hv.yaml:5: hosts[1].match.mac: 52:54:00:aa:00:01 is also matched by hosts[0]"}},
	{"hosts hostname duplicate", header + "hosts:\n  - {match: {mac: \"52:54:00:aa:00:01\"}, hostname: hv1}\n  - {match: {mac: \"52:54:00:aa:00:02\"}, hostname: HV1}\n", []string{
		`hv.yaml:5: hosts[1].hostname: "HV1" is also the hostname of hosts[0]`}},
	{"hosts management", header + "hosts:\n  - match: {mac: \"52:54:00:aa:00:01\"}\n    management: {address: 10.0.0.5, dns: [x]}\n", []string{
		`hv.yaml:5: hosts[0].management.address: "10.0.0.5" is neither dhcp nor an address in CIDR form such as 192.0.2.10/24`,
		`hv.yaml:5: hosts[0].management.dns[0]: "x" is not an IP address`}},
	{"hosts gateway outside subnet", header + "management: {gateway: 192.0.2.1}\nhosts:\n  - match: {mac: \"52:54:00:aa:00:01\"}\n    management: {address: 198.51.100.7/24}\n", []string{
		"hv.yaml:6: hosts[0].management.address: gateway 192.0.2.1 is not in the subnet of 198.51.100.7/24"}},

	// management.
	{"management nic mac", header + "management: {nic: {mac: \"52:54:00:aa:00\"}}\n", []string{
		`hv.yaml:3: management.nic.mac: "52:54:00:aa:00" is not a MAC address xx:xx:xx:xx:xx:xx`}},
	{"management nic on a guest network", header +
		"management:\n  nic: {mac: \"52:54:00:AA:00:01\"}\n" +
		"networks:\n  - name: prod\n    uplinks: [{mac: \"52:54:00:aa:00:01\"}]\n", []string{
		"hv.yaml:4: management.nic.mac: 52:54:00:aa:00:01 is also an uplink of networks[0] (prod)"}},
	{"management address", header + "management: {address: static}\n", []string{
		`hv.yaml:3: management.address: "static" is neither dhcp nor an address in CIDR form such as 192.0.2.10/24`}},
	{"management gateway", header + "management: {address: 192.0.2.10/24, gateway: 192.0.2.300}\n", []string{
		`hv.yaml:3: management.gateway: "192.0.2.300" is not an IP address`}},
	{"management gateway outside subnet", header + "management:\n  address: 192.0.2.10/24\n  gateway: 198.51.100.1\n", []string{
		"hv.yaml:5: management.gateway: gateway 198.51.100.1 is not in the subnet of 192.0.2.10/24"}},
	{"management dns", header + "management:\n  dns: [192.0.2.53, dns.example]\n", []string{
		`hv.yaml:4: management.dns[1]: "dns.example" is not an IP address`}},
	{"api port 0", header + "management: {api: {port: 0}}\n", []string{"hv.yaml:3: management.api.port: 0 is out of range 1..65535"}},
	{"api port high", header + "management: {api: {port: 65536}}\n", []string{
		"hv.yaml:3: management.api.port: 65536 is out of range 1..65535"}},
	{"api clientCA", header + "management: {api: {clientCA: \"a\\nb\"}}\n", []string{
		`hv.yaml:3: management.api.clientCA: "a\nb" contains control characters`}},
	{"syslog scheme", header + "management: {syslog: \"https://logs.example\"}\n", []string{
		`hv.yaml:3: management.syslog: "https://logs.example" is not a syslog URL such as tcp://, tls:// or udp://host[:port]`}},
	{"syslog port", header + "management: {syslog: \"udp://logs.example:0\"}\n", []string{
		`hv.yaml:3: management.syslog: "udp://logs.example:0" is not a syslog URL such as tcp://, tls:// or udp://host[:port]`}},

	// networks[].
	{"network name missing", header + "networks: [{uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\n", []string{
		"hv.yaml:3: networks[0].name: required"}},
	{"network name invalid", header + "networks: [{name: my_net, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\n", []string{
		`hv.yaml:3: networks[0].name: "my_net" is not a DNS label (letters, digits and inner '-', at most 63)`}},
	{"network name duplicate", header + "networks:\n  - {name: prod, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}\n  - {name: prod, uplinks: [{mac: \"52:54:00:bb:00:02\"}]}\n", []string{
		`hv.yaml:5: networks[1].name: "prod" is also the name of networks[0]`}},
	{"network no uplinks", header + "networks: [{name: prod}]\n", []string{
		"hv.yaml:3: networks[0].uplinks: required: one NIC, or two to bond"}},
	{"network three uplinks", header + "networks:\n  - name: prod\n    uplinks: [{mac: \"52:54:00:bb:00:01\"}, {mac: \"52:54:00:bb:00:02\"}, {mac: \"52:54:00:bb:00:03\"}]\n", []string{
		"hv.yaml:5: networks[0].uplinks: 3 uplinks, want one, or two to bond"}},
	{"network uplink twice", header + "networks:\n  - name: prod\n    uplinks:\n      - mac: \"52:54:00:bb:00:01\"\n      - mac: \"52:54:00:BB:00:01\"\n", []string{
		"hv.yaml:7: networks[0].uplinks[1].mac: 52:54:00:bb:00:01 is listed twice"}},
	{"network vlan", header + "networks: [{name: prod, uplinks: [{mac: \"52:54:00:bb:00:01\"}], vlan: 4095}]\n", []string{
		"hv.yaml:3: networks[0].vlan: 4095 is out of range 1..4094 (leave it out for untagged)"}},
	{"network vlan 0", header + "networks: [{name: prod, uplinks: [{mac: \"52:54:00:bb:00:01\"}], vlan: 0}]\n", []string{
		"hv.yaml:3: networks[0].vlan: 0 is out of range 1..4094 (leave it out for untagged)"}},
	{"uplink shared untagged", header + "networks:\n  - {name: a, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}\n  - {name: b, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}\n", []string{
		"hv.yaml:5: networks[1].uplinks[0].mac: 52:54:00:bb:00:01 is also an uplink of networks[0] (a), both untagged"}},
	{"uplink shared same vlan", header + "networks:\n  - {name: a, uplinks: [{mac: \"52:54:00:bb:00:01\"}], vlan: 10}\n  - {name: b, uplinks: [{mac: \"52:54:00:bb:00:01\"}], vlan: 10}\n", []string{
		"hv.yaml:5: networks[1].uplinks[0].mac: 52:54:00:bb:00:01 is also an uplink of networks[0] (a) on the same VLAN 10"}},
	{"uplink shared other bond", header + "networks:\n  - {name: a, uplinks: [{mac: \"52:54:00:bb:00:01\"}, {mac: \"52:54:00:bb:00:02\"}], vlan: 10}\n  - {name: b, uplinks: [{mac: \"52:54:00:bb:00:01\"}], vlan: 20}\n", []string{
		"hv.yaml:5: networks[1].uplinks[0].mac: 52:54:00:bb:00:01 is also an uplink of networks[0] (a) with other uplinks; networks sharing a NIC must share all their uplinks"}},
	{"network domain", header + "networks: [{name: prod, uplinks: [{mac: \"52:54:00:bb:00:01\"}], domain: \"a b\"}]\n", []string{
		`hv.yaml:3: networks[0].domain: "a b" is not a valid domain name (letters, digits, '.', '_' and '-', at most 63)`}},

	// resources.
	{"reserve not smaller", header + "resources:\n  host: {memory: 1Gi, cpus: 4}\n", []string{
		"hv.yaml:3: resources.reserve.memory: 1Gi is not smaller than resources.host.memory 1Gi"}},
	{"reserve cpus not smaller", header + "resources:\n  host: {cpus: 2}\n  reserve: {cpus: 2}\n", []string{
		"hv.yaml:5: resources.reserve.cpus: 2 is not smaller than resources.host.cpus 2"}},
	{"reserve zero", header + "resources:\n  reserve: {memory: 0, cpus: 0}\n", []string{
		"hv.yaml:4: resources.reserve.cpus: must be at least 1: the host needs a CPU of its own",
		"hv.yaml:4: resources.reserve.memory: must be more than 0: the host needs memory of its own"}},
	{"host memory size", header + "resources:\n  host: {memory: 64GB}\n", []string{
		`hv.yaml:4: resources.host.memory: invalid size "64GB": want a whole number with an optional unit (Ki, Mi, Gi, Ti, Pi, Ei, K, M, G, T, P, E)`}},

	// templates[].
	{"template name duplicate", header + "templates:\n  - {name: t, cpus: 1, memory: 1Gi}\n  - {name: t, cpus: 1, memory: 1Gi}\n", []string{
		`hv.yaml:5: templates[1].name: "t" is also the name of templates[0]`}},
	{"template name invalid", header + "templates: [{name: a/b, cpus: 1, memory: 1Gi}]\n", []string{
		`hv.yaml:3: templates[0].name: "a/b" is not a valid name (letters, digits, '.', '_' and '-', at most 63)`}},
	{"template required", header + "templates:\n  - name: t\n", []string{
		"hv.yaml:4: templates[0].cpus: required", "hv.yaml:4: templates[0].memory: required"}},
	{"template cpus", header + "templates:\n  - name: t\n    cpus: 0\n    memory: 1Gi\n", []string{
		"hv.yaml:5: templates[0].cpus: 0 is out of range 1..4096"}},
	{"template memory small", header + "templates:\n  - name: t\n    cpus: 1\n    memory: 8Mi\n", []string{
		"hv.yaml:6: templates[0].memory: 8Mi is below the minimum 16Mi"}},
	{"template memory size", header + "templates:\n  - name: t\n    cpus: 1\n    memory: 1.5Gi\n", []string{
		`hv.yaml:6: templates[0].memory: invalid size "1.5Gi": want a whole number with an optional unit (Ki, Mi, Gi, Ti, Pi, Ei, K, M, G, T, P, E)`}},
	{"template disk type", header + "templates:\n  - {name: t, cpus: 1, memory: 1Gi, disk: [8Gi]}\n", []string{
		"hv.yaml:4: templates[0].disk: expected a size such as 512Mi, got a list"}},
	{"template cpu limit", header + "templates:\n  - name: t\n    cpus: 2\n    memory: 1Gi\n    limits: {cpu: 250%}\n", []string{
		"hv.yaml:7: templates[0].limits.cpu: 250% is out of range 1%..200% for 2 cpus"}},
	{"template cpu limit 0", header + "templates:\n  - {name: t, cpus: 1, memory: 1Gi, limits: {cpu: 0%}}\n", []string{
		"hv.yaml:4: templates[0].limits.cpu: 0% is out of range 1%..100% for 1 cpus"}},
	{"template cpu limit syntax", header + "templates:\n  - {name: t, cpus: 1, memory: 1Gi, limits: {cpu: 50}}\n", []string{
		`hv.yaml:4: templates[0].limits.cpu: expected a percentage such as 100%, got "50"`}},
	{"template limits negative", header + "templates:\n  - name: t\n    cpus: 1\n    memory: 1Gi\n    limits:\n      iops: -1\n      pids: -2\n", []string{
		"hv.yaml:8: templates[0].limits.iops: must not be negative", "hv.yaml:9: templates[0].limits.pids: must not be negative"}},

	// guests[].
	{"guest required", header + "guests:\n  - autostart: true\n", []string{
		"hv.yaml:4: guests[0].name: required", "hv.yaml:4: guests[0].network: required", "hv.yaml:4: guests[0].template: required"}},
	{"guest references", header + "guests:\n  - name: g\n    template: big\n    network: dmz\n", []string{
		`hv.yaml:5: guests[0].template: unknown template "big"`, `hv.yaml:6: guests[0].network: unknown network "dmz"`}},
	{"guest name duplicate", header + "templates: [{name: t, cpus: 1, memory: 1Gi}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\nguests:\n  - {name: g, template: t, network: n}\n  - {name: g, template: t, network: n}\n", []string{
		`hv.yaml:7: guests[1].name: "g" is also the name of guests[0]`}},
	{"guest overrides", header + "templates: [{name: t, cpus: 2, memory: 1Gi, limits: {cpu: 200%}}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\nguests:\n  - name: g\n    template: t\n    network: n\n    cpus: 1\n    memory: 1Mi\n", []string{
		"hv.yaml:9: guests[0].cpus: 1 cpus is less than the cpu limit 200% of template t",
		"hv.yaml:10: guests[0].memory: 1Mi is below the minimum 16Mi"}},
	{"guest cpus 0", header + "templates: [{name: t, cpus: 2, memory: 1Gi}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\nguests: [{name: g, template: t, network: n, cpus: 0}]\n", []string{
		"hv.yaml:5: guests[0].cpus: 0 is out of range 1..4096"}},
	{"guest domain unknown", header + "templates: [{name: t, cpus: 1, memory: 1Gi}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}], domain: prod}]\nguests: [{name: g, template: t, network: n, domain: dev}]\n", []string{
		`hv.yaml:5: guests[0].domain: unknown domain "dev": no network declares it`}},
	{"guest domain mismatch", header + "templates: [{name: t, cpus: 1, memory: 1Gi}]\nnetworks:\n  - {name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}], domain: prod}\n  - {name: m, uplinks: [{mac: \"52:54:00:bb:00:02\"}], domain: dmz}\nguests: [{name: g, template: t, network: n, domain: dmz}]\n", []string{
		`hv.yaml:7: guests[0].domain: "dmz" differs from domain "prod" of network n`}},
	{"guest memory budget", header + "resources:\n  host: {memory: 4Gi}\ntemplates: [{name: t, cpus: 1, memory: 1Gi}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\nguests:\n" +
		"  - {name: a, template: t, network: n}\n" +
		"  - {name: b, template: t, network: n, memory: 1536Mi}\n" +
		"  - name: c\n    template: t\n    network: n\n" +
		"  - {name: d, template: t, network: n}\n", []string{
		"hv.yaml:10: guests[2].memory: guests total 4352Mi exceeds host budget 3Gi (4Gi host - 1Gi reserve)"}},
	{"guest cpu budget", header + "resources:\n  host: {cpus: 4}\ntemplates: [{name: t, cpus: 2, memory: 1Gi}]\nnetworks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\nguests:\n" +
		"  - {name: a, template: t, network: n}\n" +
		"  - {name: b, template: t, network: n, cpus: 1}\n" +
		"  - {name: c, template: t, network: n, cpus: 1}\n", []string{
		"hv.yaml:10: guests[2].cpus: guests total 4 cpus exceeds host budget 3 (4 host - 1 reserve)"}},

	{"guest limits", header + "templates: [{name: t, cpus: 1, memory: 1Gi, limits: {cpuWeight: 0, memory: 512Mi, bandwidth: 10Mi}}, {name: u, cpus: 1, memory: 64Mi, limits: {cpuWeight: 10001, memory: 128Mi}}]\n" +
		"networks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\n" +
		"guests: [{name: g, template: u, network: n, memory: 256Mi, mac: \"01:00:5e:00:00:01\", addresses: [10.0.0.5, 10.0.0.300]}, {name: h, template: u, network: n, mac: \"52:54:00:zz:00:01\"}]\n", []string{
		"hv.yaml:3: templates[0].limits.memory: 512Mi is below the template's memory 1Gi",
		"hv.yaml:3: templates[1].limits.cpuWeight: 10001 is out of range 1..10000",
		`hv.yaml:5: guests[0].addresses[1]: "10.0.0.300" is not an IP address`,
		"hv.yaml:5: guests[0].mac: 01:00:5e:00:00:01 is a multicast address",
		"hv.yaml:5: guests[0].memory: 256Mi is more than the memory ceiling 128Mi of template u",
		`hv.yaml:5: guests[1].mac: "52:54:00:zz:00:01" is not a MAC address such as 52:54:00:12:34:56`}},

	// updates.
	{"repository", header + "updates: {repository: \"ftp://updates.example\", trustedRoot: root.json}\n", []string{
		`hv.yaml:3: updates.repository: "ftp://updates.example" is not an http(s) URL such as https://updates.example/hardvisor`}},
	{"trusted root required", header + "updates:\n  repository: https://updates.example/hv\n", []string{
		"hv.yaml:3: updates.trustedRoot: required with updates.repository"}},
	{"reboot window", header + "updates:\n  reboot: {window: \"Sunday 2am\"}\n", []string{
		`hv.yaml:4: updates.reboot.window: "Sunday 2am" is not DAY HH:MM-HH:MM, DAY one of Mon..Sun or daily, such as "Sun 02:00-04:00"`}},
	{"reboot window hour", header + "updates:\n  reboot: {window: \"daily 24:00-01:00\"}\n", []string{
		`hv.yaml:4: updates.reboot.window: "daily 24:00-01:00" is not DAY HH:MM-HH:MM, DAY one of Mon..Sun or daily, such as "Sun 02:00-04:00"`}},
	{"reboot window empty", header + "updates:\n  reboot: {window: \"Mon 03:00-03:00\"}\n", []string{
		`hv.yaml:4: updates.reboot.window: "Mon 03:00-03:00" is empty: it starts when it ends`}},

	// security.
	{"selinux permissive in production", header + "security:\n  selinux: permissive\n", []string{
		"hv.yaml:4: security.selinux: permissive is not allowed in the production profile"}},
	{"selinux unknown", header + "profile: debug\nsecurity: {selinux: disabled}\n", []string{
		`hv.yaml:4: security.selinux: unknown mode "disabled", want enforcing or permissive`}},
	{"lockdown", header + "security: {lockdown: none}\n", []string{
		`hv.yaml:3: security.lockdown: unknown mode "none", want integrity or confidentiality`}},

	// kernel.
	{"module name", header + "kernel:\n  modules: [virtio_net, \"../evil\"]\n", []string{
		`hv.yaml:4: kernel.modules[1]: "../evil" is not a module name such as virtio_net`}},
	{"module duplicate", header + "kernel:\n  modules:\n    - virtio_net\n    - virtio-net\n", []string{
		"hv.yaml:6: kernel.modules[1]: virtio-net is also kernel.modules[0]"}},
	{"cmdline syntax", header + "kernel:\n  cmdline: [\"a b\", 'x=\"y\"', \"=v\", --]\n", []string{
		`hv.yaml:4: kernel.cmdline[0]: "a b" is not key or key=value without spaces or quotes`,
		`hv.yaml:4: kernel.cmdline[1]: "x=\"y\"" is not key or key=value without spaces or quotes`,
		`hv.yaml:4: kernel.cmdline[2]: "=v" is not key or key=value without spaces or quotes`,
		"hv.yaml:4: kernel.cmdline[3]: -- would hand the arguments after it to PID 1"}},
	{"cmdline reserved", header + "kernel:\n  cmdline:\n    - selinux=0\n    - init=/bin/sh\n", []string{
		"hv.yaml:5: kernel.cmdline[0]: selinux is set by hardvisor and may not be changed in the production profile",
		"hv.yaml:6: kernel.cmdline[1]: init is set by hardvisor and may not be changed in the production profile"}},

	// Services.
	{"service names and commands", header + "services:\n  - name: a\n    command: [bin/a]\n  - name: a\n  - {name: \"b c\", command: [/x]}\n", []string{
		`hv.yaml:5: services[0].command[0]: "bin/a" is not an absolute path to a program`,
		`hv.yaml:6: services[1].command: required`,
		`hv.yaml:6: services[1].name: "a" is also services[0]`,
		`hv.yaml:7: services[2].name: "b c" is not a valid name (letters, digits, '.', '_' and '-', at most 63)`}},
	{"service dependencies", header + "services:\n  - name: a\n    command: [/a]\n    requires: [nope]\n    after: [a]\n", []string{
		`hv.yaml:6: services[0].requires[0]: unknown service "nope"`,
		`hv.yaml:7: services[0].after[0]: a service cannot depend on itself`}},
	{"service fields", header + "services:\n  - name: a\n    command: [/a]\n    restart: sometimes\n    user: root\n    env: [\"1=x\"]\n" +
		"    capabilities: [\"net bind\"]\n    ready: {tcp: 80, file: /x}\n    health: {tcp: 70000, interval: 5}\n" +
		"    limits: {memoryMin: 2Mi, memoryMax: 1Mi, cpuWeight: 20000, pids: -1}\n    backoff: {initial: 10s, max: 1s}\n    stopTimeout: -1s\n", []string{
		`hv.yaml:6: services[0].restart: unknown policy "sometimes", want always, on-failure or never`,
		`hv.yaml:7: services[0].user: "root" is not UID:GID, such as 1000:1000`,
		`hv.yaml:8: services[0].env[0]: "1=x" is not KEY=value`,
		`hv.yaml:9: services[0].capabilities[0]: "net bind" is not a capability name such as net_bind_service`,
		`hv.yaml:10: services[0].ready: set exactly one of exec, tcp and file`,
		`hv.yaml:11: services[0].health.interval: expected a duration such as 30s, got "5"`,
		`hv.yaml:11: services[0].health.tcp: 70000 is out of range 1..65535`,
		`hv.yaml:12: services[0].limits.cpuWeight: 20000 is out of range 1..10000`,
		`hv.yaml:12: services[0].limits.memoryMin: 2Mi exceeds memoryMax 1Mi`,
		`hv.yaml:12: services[0].limits.pids: must not be negative`,
		`hv.yaml:13: services[0].backoff.initial: 10s exceeds backoff.max 1s`,
		`hv.yaml:14: services[0].stopTimeout: invalid duration "-1s": want a number with a unit (ms, s, m, h), such as 30s`}},
	{"service reservations over the reserve", header + "resources: {reserve: {memory: 1Gi}}\nservices:\n  - {name: a, command: [/a], limits: {memoryMin: 700Mi}}\n  - {name: b, command: [/b], limits: {memoryMin: 700Mi}}\n", []string{
		`hv.yaml:4: services: the services reserve 1400Mi of memory (limits.memoryMin), more than resources.reserve.memory 1Gi`}},
	{"ready timeout zero", header + "host: {readyTimeout: 0s}\n", []string{"hv.yaml:3: host.readyTimeout: must be more than 0"}},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			got := errorLines(t, tt.src)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestAliasBomb(t *testing.T) {
	// Each of the 1000 hosts expands the same 1000 addresses: a million
	// nodes from a file of a few thousand.
	var b strings.Builder
	b.WriteString(header + "x: &dns [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("192.0.2.1")
	}
	b.WriteString("]\nhosts:\n")
	for range 1000 {
		b.WriteString("  - {match: {mac: \"52:54:00:aa:00:01\"}, management: {dns: *dns}}\n")
	}
	want := []string{`hv.yaml:3: unknown field "x"`, "hv.yaml:3: too many alias expansions"}
	if got := errorLines(t, b.String()); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseReportsEveryError(t *testing.T) {
	src := header +
		"host:\n" +
		"  hostname: -bad-\n" + // line 4: invalid value
		"  consol: ttyS1\n" + // line 5: unknown field
		"templates:\n" +
		"  - {name: t, cpus: 1, memory: 12Q}\n" // line 7: bad size
	want := []string{
		`hv.yaml:4: host.hostname: "-bad-" is not a valid hostname (RFC 1123 label: letters, digits and inner '-', at most 63)`,
		`hv.yaml:5: host: unknown field "consol" (did you mean "console"?)`,
		`hv.yaml:7: templates[0].memory: invalid size "12Q": want a whole number with an optional unit (Ki, Mi, Gi, Ti, Pi, Ei, K, M, G, T, P, E)`,
	}
	if got := errorLines(t, src); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidEdgeCases(t *testing.T) {
	// Things that look odd but are fine, so the checks must not fire.
	c := mustParse(t, "apiVersion: hardvisor.dev/v1\nversion: 2.0.0-rc.1\nprofile: debug\n"+
		"host: {hostname: 1234, timezone: America/Argentina/Buenos_Aires, console: hvc0}\n"+
		"management: {address: \"2001:db8::10/64\", gateway: \"2001:db8::1\", api: {port: 443}, syslog: \"tls://[2001:db8::53]:6514\"}\n"+
		"networks:\n"+
		"  - {name: a, uplinks: [{mac: \"52:54:00:bb:00:01\"}, {mac: \"52:54:00:bb:00:02\"}], vlan: 10, domain: prod}\n"+
		"  - {name: b, uplinks: [{mac: \"52:54:00:bb:00:02\"}, {mac: \"52:54:00:bb:00:01\"}], vlan: 20, domain: dmz}\n"+
		"  - {name: c, uplinks: [{mac: \"52:54:00:bb:00:01\"}, {mac: \"52:54:00:bb:00:02\"}]}\n"+
		"resources: {host: {memory: 4Gi, cpus: 8}}\n"+
		"templates: [{name: t, cpus: 1, memory: 1Gi, limits: {memory: 1Gi}}]\n"+
		"guests:\n"+
		"  - {name: g1, template: t, network: a, domain: prod, autostart: yes}\n"+
		"  - {name: g2, template: t, network: b, cpus: 2}\n"+
		"  - {name: g3, template: t, network: c, domain: dmz}\n"+
		"updates: {reboot: {window: \"daily 23:00-01:00\"}}\n"+
		"security: {selinux: permissive, lockdown: confidentiality}\n"+
		"kernel: {cmdline: [quiet, \"foo=bar=baz\", selinux=0]}\n")
	if c.Host.Hostname != "1234" || !c.Guests[0].Autostart || *c.Guests[1].CPUs != 2 {
		t.Errorf("Parse = %+v", c)
	}
}

func TestGuestSpecs(t *testing.T) {
	c := mustParse(t, header+
		"templates:\n  - {name: t, cpus: 2, memory: 1Gi, disk: 8Gi, image: base.img, limits: {cpu: 150%, iops: 100, pids: 64}}\n"+
		"networks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}], domain: prod}]\n"+
		"guests:\n  - {name: a, template: t, network: n, autostart: true}\n"+
		"  - {name: b, template: t, network: n, cpus: 2, memory: 2Gi, image: b.img, mac: \"52:54:00:AA:00:02\", addresses: [192.0.2.5]}\n")
	got := c.GuestSpecs()
	want := []GuestSpec{
		{Name: "a", Template: "t", Network: "n", Domain: "prod", Autostart: true, CPUs: 2, Memory: Gi, Disk: 8 * Gi, Image: "base.img",
			Limits: Limits{CPU: 150, CPUWeight: 100, Memory: Gi + GuestOverhead, IOPS: 100, PIDs: 64}, MAC: GuestMAC("a")},
		{Name: "b", Template: "t", Network: "n", Domain: "prod", CPUs: 2, Memory: 2 * Gi, Disk: 8 * Gi, Image: "b.img",
			Limits: Limits{CPU: 150, CPUWeight: 100, Memory: 2*Gi + GuestOverhead, IOPS: 100, PIDs: 64}, MAC: "52:54:00:aa:00:02", Addresses: []string{"192.0.2.5"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GuestSpecs =\n%+v\nwant\n%+v", got, want)
	}
	if m := GuestMAC("a"); m == GuestMAC("b") || !macRe.MatchString(m) || m[:9] != "52:54:00:" {
		t.Errorf("GuestMAC(a) = %s, GuestMAC(b) = %s", m, GuestMAC("b"))
	}
}

func TestGuestOverridesArePointers(t *testing.T) {
	c := mustParse(t, header+
		"templates: [{name: t, cpus: 2, memory: 1Gi}]\n"+
		"networks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\n"+
		"guests:\n  - {name: a, template: t, network: n}\n  - {name: b, template: t, network: n, cpus: 1, memory: 2Gi}\n")
	if g := c.Guests[0]; g.CPUs != nil || g.Memory != nil {
		t.Errorf("unset overrides = %v, %v; want nil", g.CPUs, g.Memory)
	}
	if g := c.Guests[1]; g.CPUs == nil || *g.CPUs != 1 || g.Memory == nil || *g.Memory != 2*Gi {
		t.Errorf("overrides = %v, %v; want 1, 2Gi", g.CPUs, g.Memory)
	}
}

func TestRoundTrip(t *testing.T) {
	for name, src := range map[string]string{
		"design":  designExample,
		"default": string(Default()),
		"minimal": header,
		"odd": header + "management: {nic: {mac: \"52:54:00:AA:00:0F\"}}\n" +
			"resources: {host: {memory: 10000000000}}\n" +
			"templates: [{name: t, cpus: 1, memory: 100M, disk: 1G, limits: {cpu: 50%}}]\n" +
			"networks: [{name: n, uplinks: [{mac: \"52:54:00:bb:00:01\"}]}]\n" +
			"guests: [{name: \"0123\", template: t, network: n, cpus: 1, memory: 17Mi}]\n" +
			"kernel: {modules: [], cmdline: [\"x=1\", \"y:z\", n]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, src)
			out, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := Parse("marshaled.yaml", out)
			if err != nil {
				t.Fatalf("Parse(Marshal()):\n%v\n%s", err, out)
			}
			if !reflect.DeepEqual(c, c2) {
				t.Errorf("round trip:\n%#v\nwant\n%#v\n%s", c2, c, out)
			}
			out2, _ := c2.Marshal()
			if string(out) != string(out2) {
				t.Errorf("Marshal not deterministic:\n%s\n%s", out, out2)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	c := &Config{
		APIVersion: APIVersion,
		Version:    "1.0.0",
		Management: Management{NIC: NIC{MAC: "52:54:00:AA:00:01"}},
		Templates:  []Template{{Name: "t", CPUs: 1, Memory: 1000 * Mi, Disk: 1e9}},
		Guests:     []Guest{{Name: "g", Template: "t", Network: "net", Memory: ptr(Gi), CPUs: ptr(0)}},
		Kernel:     Kernel{Modules: []string{}},
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Defaults applied, MAC lowered, sizes canonical, an explicit empty module
	// list kept, set-but-zero pointers kept.
	want := `apiVersion: hardvisor.dev/v1
version: 1.0.0
profile: production
host:
  hostname: hardvisor
  timezone: UTC
  console: ttyS0
  readyTimeout: 2m0s
management:
  nic:
    mac: 52:54:00:aa:00:01
  address: dhcp
  api:
    port: 8443
resources:
  reserve:
    memory: 1Gi
    cpus: 1
templates:
  - name: t
    cpus: 1
    memory: 1000Mi
    disk: 1000000000
guests:
  - name: g
    template: t
    network: net
    cpus: 0
    memory: 1Gi
security:
  selinux: enforcing
  lockdown: integrity
kernel:
  modules: []
`
	if string(out) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", out, want)
	}
	if c.Management.NIC.MAC != "52:54:00:AA:00:01" || c.Profile != "" {
		t.Error("Marshal changed its receiver")
	}
}

func TestForHost(t *testing.T) {
	c := mustParse(t, header+
		"host: {hostname: hv}\n"+
		"management: {address: dhcp, dns: [192.0.2.53]}\n"+
		"hosts:\n"+
		"  - match: {mac: \"52:54:00:aa:00:01\"}\n"+
		"    hostname: hv01\n"+
		"    management: {address: 192.0.2.11/24, gateway: 192.0.2.1}\n"+
		"  - match: {mac: \"52:54:00:aa:00:02\"}\n"+
		"    hostname: hv02\n"+
		"    management: {dns: [192.0.2.54, 192.0.2.55]}\n")

	h := c.ForHost([]string{"52:54:00:ff:ff:ff", "52:54:00:AA:00:01"})
	if h.Host.Hostname != "hv01" || h.Management.Address != "192.0.2.11/24" || h.Management.Gateway != "192.0.2.1" ||
		!slices.Equal(h.Management.DNS, []string{"192.0.2.53"}) {
		t.Errorf("ForHost(hv01) = %+v %+v", h.Host, h.Management)
	}
	h = c.ForHost([]string{"52:54:00:aa:00:02"})
	if h.Host.Hostname != "hv02" || h.Management.Address != "dhcp" || h.Management.Gateway != "" ||
		!slices.Equal(h.Management.DNS, []string{"192.0.2.54", "192.0.2.55"}) {
		t.Errorf("ForHost(hv02) = %+v %+v", h.Host, h.Management)
	}
	// Both match: the first hosts[] entry wins, not the first MAC.
	if h = c.ForHost([]string{"52:54:00:aa:00:02", "52:54:00:aa:00:01"}); h.Host.Hostname != "hv01" {
		t.Errorf("ForHost(both) hostname = %q, want hv01", h.Host.Hostname)
	}
	h = c.ForHost(nil)
	if !reflect.DeepEqual(h, c) {
		t.Errorf("ForHost(no match) = %+v, want a copy of c", h)
	}
	// The copy shares nothing with c.
	h.Management.DNS[0] = "changed"
	h.Hosts[1].Management.DNS[0] = "changed"
	if c.Management.DNS[0] != "192.0.2.53" || c.Hosts[1].Management.DNS[0] != "192.0.2.54" {
		t.Error("ForHost's copy aliases the original")
	}
	if h = c.ForHost([]string{"52:54:00:aa:00:02"}); &h.Management.DNS[0] == &c.Hosts[1].Management.DNS[0] {
		t.Error("ForHost's override aliases hosts[]")
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{"hv.yaml", 12, "guests[2].memory", "64Gi exceeds host budget 30Gi"}, "hv.yaml:12: guests[2].memory: 64Gi exceeds host budget 30Gi"},
		{FieldError{"hv.yaml", 3, "", `unknown field "x"`}, `hv.yaml:3: unknown field "x"`},
		{FieldError{"hv.yaml", 0, "", "empty config"}, "hv.yaml: empty config"},
		{FieldError{"", 0, "a", "b"}, "a: b"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	es := Errors{{File: "f", Line: 2, Path: "b", Msg: "x"}, {File: "f", Line: 2, Path: "a", Msg: "y"}, {File: "f", Line: 1, Path: "z", Msg: "z"}}
	es.sort()
	if got, want := es.Error(), "f:1: z: z\nf:2: a: y\nf:2: b: x"; got != want {
		t.Errorf("sorted Errors = %q, want %q", got, want)
	}
	var fe *FieldError
	if !errors.As(error(es), &fe) || fe.Path != "z" {
		t.Errorf("errors.As(Errors, *FieldError) = %v", fe)
	}
}

func TestFeatureModules(t *testing.T) {
	c := LoadDefault()
	if got := c.FeatureModules(); len(got) != 1 || got[0] != "nf_tables" {
		t.Errorf("default config needs %v, want only the firewall's nf_tables", got)
	}
	c.Networks = []Network{
		{Name: "a", Uplinks: []Uplink{{MAC: "52:54:00:bb:00:01"}}},
		{Name: "b", VLAN: 100, Uplinks: []Uplink{{MAC: "52:54:00:bb:00:02"}, {MAC: "52:54:00:bb:00:03"}}},
	}
	c.Guests = []Guest{{Name: "web1"}}
	got := c.FeatureModules()
	want := []string{"nf_tables", "bridge", "8021q", "bonding", "tun", "vhost_net", "loop", "squashfs"}
	if len(got) != len(want) {
		t.Fatalf("FeatureModules = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("FeatureModules = %v, want %v", got, want)
		}
	}
}

// TestImageModules: the default list without guests or networks leaves out
// every feature-only module; a network keeps the bridge (and only what its
// shape needs); guests keep KVM and their backends; other modules stay.
func TestImageModules(t *testing.T) {
	c := LoadDefault()
	keep, unused := c.ImageModules()
	if want := []string{"kvm", "kvm_intel", "kvm_amd", "bridge", "8021q", "bonding", "tun", "vhost_net", "loop", "squashfs"}; !slices.Equal(unused, want) {
		t.Errorf("default config leaves out %v, want %v", unused, want)
	}
	if len(keep)+len(unused) != len(wantModules) || !slices.Contains(keep, "nf_tables") || !slices.Contains(keep, "ixgbe") {
		t.Errorf("default config keeps %v", keep)
	}
	c.Networks = []Network{{Name: "a", Uplinks: []Uplink{{MAC: "52:54:00:bb:00:01"}}}}
	if _, unused := c.ImageModules(); !slices.Equal(unused, []string{"kvm", "kvm_intel", "kvm_amd", "8021q", "bonding", "tun", "vhost_net", "loop", "squashfs"}) {
		t.Errorf("one untagged single-uplink network leaves out %v", unused)
	}
	c.Guests = []Guest{{Name: "web1"}}
	if _, unused := c.ImageModules(); !slices.Equal(unused, []string{"8021q", "bonding"}) {
		t.Errorf("a guest on that network leaves out %v, want only 8021q and bonding", unused)
	}
	// Names are compared as the kernel does, '-' and '_' alike.
	c.Guests, c.Networks, c.Kernel.Modules = nil, nil, []string{"kvm-intel", "ext4"}
	if keep, unused := c.ImageModules(); !slices.Equal(keep, []string{"ext4"}) || !slices.Equal(unused, []string{"kvm-intel"}) {
		t.Errorf("kvm-intel and ext4 without guests: keep %v, leave out %v", keep, unused)
	}
}
