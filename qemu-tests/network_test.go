package qemutests

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// networkConfig is a debug host with four NICs: the first (by PCI
// address) manages it by DHCP from QEMU's user network, the second and
// third are the bonded uplinks of a guest network on VLAN 100 and of an
// untagged one, and the fourth is not in the config.
const networkConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-network
profile: debug
networks:
  - {name: prod, uplinks: [{mac: "52:54:00:12:34:57"}, {mac: "52:54:00:12:34:58"}], vlan: 100}
  - {name: lab, uplinks: [{mac: "52:54:00:12:34:57"}, {mac: "52:54:00:12:34:58"}]}
`

// TestNetwork boots a host with four NICs and checks the layout from the
// inside: the management NIC got its DHCP lease inside the mgmt namespace,
// which holds it and lo only; the root namespace has the two uplinks in an
// active-backup bond, the bond in a VLAN-filtering bridge, none of them with
// an address or IPv6, the unmentioned NIC down and forwarding off.
func TestNetwork(t *testing.T) {
	dir := buildConfig(t, "network", networkConfig)
	// The DHCP transaction ID needs the kernel's random pool, which TCG's
	// CPU (no RDRAND) fills only with a hardware RNG, as servers have.
	vm := directBoot(t, dir, func(o *qemu.Options) {
		o.NICs = []qemu.NIC{{}, {}, {}, {}}
		o.ExtraArgs = []string{"-device", "virtio-rng-pci"}
	})
	lease := expect(t, vm, regexp.MustCompile(`hardvisor: management: (\w+) 10\.0\.2\.15/24 via 10\.0\.2\.2 in namespace mgmt \(DHCP from 10\.0\.2\.2\)`), bootTimeout)
	// The lease comes in the background, before or after the ready line.
	if !readyLine("0.1.0-network").MatchString(vm.Console()) {
		expect(t, vm, readyLine("0.1.0-network"), bootTimeout)
	}
	if !strings.Contains(vm.Console(), "hardvisor: debug shell on /dev/ttyS0") {
		expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	}
	sh := &shell{t: t, vm: vm}

	r := report(t, sh)
	n := r.Network
	if n == nil {
		t.Fatal("status report has no network")
	}
	if n.MgmtNIC != lease[1] || n.Address != "10.0.2.15/24" || n.Gateway != "10.0.2.2" || !n.DHCP {
		t.Errorf("management in the report: %+v", n)
	}
	if !slices.Equal(n.NamespaceLinks, []string{lease[1], "lo"}) && !slices.Equal(n.NamespaceLinks, []string{"lo", lease[1]}) {
		t.Errorf("namespace mgmt holds %v, want only lo and %s", n.NamespaceLinks, lease[1])
	}
	if len(n.Bridges) != 1 || !regexp.MustCompile(`^hvbr0: hvbond0 \(\w+ \w+\) prod/100 lab/untagged$`).MatchString(n.Bridges[0]) {
		t.Fatalf("bridges %q", n.Bridges)
	}
	if len(n.Down) != 1 {
		t.Errorf("down %q, want the one NIC the config does not name", n.Down)
	}
	f := strings.Fields(n.Bridges[0])
	up1, up2 := strings.TrimPrefix(f[2], "("), strings.TrimSuffix(f[3], ")")

	links := strings.Fields(sh.run("ls /sys/class/net"))
	slices.Sort(links)
	want := []string{"bonding_masters", "hvbond0", "hvbr0", "lo", up1, up2, n.Down[0]}
	slices.Sort(want)
	if !slices.Equal(links, want) {
		t.Errorf("root namespace links %v, want %v (the management NIC is gone)", links, want)
	}
	for file, want := range map[string]string{
		"/sys/class/net/hvbr0/bridge/vlan_filtering":       "1",
		"/sys/class/net/hvbond0/bonding/mode":              "active-backup 1",
		"/sys/class/net/hvbond0/bonding/slaves":            up1 + " " + up2,
		"/proc/sys/net/ipv6/conf/hvbr0/disable_ipv6":       "1",
		"/proc/sys/net/ipv6/conf/hvbond0/disable_ipv6":     "1",
		"/proc/sys/net/ipv6/conf/" + up1 + "/disable_ipv6": "1",
		"/proc/sys/net/ipv4/ip_forward":                    "0",
		"/sys/class/net/" + n.Down[0] + "/operstate":       "down",
		"/sys/class/net/hvbond0/master/ifindex":            strings.TrimSpace(sh.run("cat /sys/class/net/hvbr0/ifindex")),
	} {
		if got := strings.TrimSpace(sh.run("cat " + file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// No IPv4 or IPv6 address anywhere in the root namespace but loopback's.
	addrs := sh.run("cat /proc/net/fib_trie")
	for _, m := range regexp.MustCompile(`\|-- (\S+)\n\s+/32 host LOCAL`).FindAllStringSubmatch(addrs, -1) {
		if !strings.HasPrefix(m[1], "127.") {
			t.Errorf("root namespace holds address %s:\n%s", m[1], addrs)
		}
	}
	if v6 := strings.TrimSpace(sh.run("cat /proc/net/if_inet6")); v6 != "" {
		t.Errorf("root namespace has IPv6 addresses:\n%s", v6)
	}
	powerDown(t, vm)
}
