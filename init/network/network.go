// Package network lays out the host's networks before any service starts:
// the management NIC moves into a network namespace of its own (Namespace),
// where it is configured statically or by DHCP and where only management
// services run; the guest uplinks become VLAN-filtering bridges in the root
// namespace with no host address, IPv6 disabled and forwarding off, behind an
// nftables ruleset that drops everything addressed to the host; NICs the
// config does not mention stay down.
//
// NewPlan decides all of it from the config and the NICs found (pure, and
// tested value by value); Apply (Linux) carries a plan out.
package network

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"hardvisor.dev/hardvisor/config"
)

// Namespace is the management network namespace, as ip-netns(8) names it:
// /run/netns/mgmt.
const Namespace = "mgmt"

// NamespacePath is where the management namespace is bind-mounted; a service
// joins it with supervise.Spec.NetNS.
const NamespacePath = "/run/netns/" + Namespace

// NIC is a physical network interface.
type NIC struct {
	// Name is the kernel's name (eth0, enp1s0).
	Name string
	// MAC is its permanent address, lower case.
	MAC string
	// PCI is the PCI address of its device ("0000:00:02.0"); empty off PCI.
	PCI string
}

// Discover lists the Ethernet NICs backed by a device under sysClassNet
// (/sys/class/net), sorted by PCI address and then name. Virtual interfaces
// (lo, bridges, bonds, veth, tap) have no device and are left out.
func Discover(sysClassNet string) ([]NIC, error) {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil, err
	}
	var nics []NIC
	for _, e := range ents {
		dir := filepath.Join(sysClassNet, e.Name())
		dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device"))
		if err != nil {
			continue
		}
		if t, err := readTrimmed(filepath.Join(dir, "type")); err != nil || t != "1" { // ARPHRD_ETHER
			continue
		}
		mac, err := readTrimmed(filepath.Join(dir, "address"))
		if err != nil {
			continue
		}
		n := NIC{Name: e.Name(), MAC: strings.ToLower(mac)}
		if sub, err := filepath.EvalSymlinks(filepath.Join(dev, "subsystem")); err == nil && filepath.Base(sub) == "pci" {
			n.PCI = filepath.Base(dev)
		} else if strings.HasPrefix(filepath.Base(filepath.Dir(dev)), "virtio") || filepath.Base(sub) == "virtio" {
			// A virtio NIC's device is virtioN under its PCI function.
			n.PCI = filepath.Base(filepath.Dir(dev))
		}
		nics = append(nics, n)
	}
	sortNICs(nics)
	return nics, nil
}

func sortNICs(nics []NIC) {
	slices.SortFunc(nics, func(a, b NIC) int {
		if a.PCI != b.PCI {
			switch {
			case a.PCI == "":
				return 1
			case b.PCI == "":
				return -1
			}
			return strings.Compare(a.PCI, b.PCI)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func readTrimmed(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}

// Plan is the host's networks, decided.
type Plan struct {
	// Mgmt is the management NIC and its addressing; nil when the machine
	// has no NIC to manage it through.
	Mgmt *Mgmt
	// Trunks are the guest uplinks, one bridge per set of uplinks.
	Trunks []Trunk
	// Down are the NICs the config does not mention: kept down.
	Down []NIC
}

// Mgmt is the management NIC's configuration inside Namespace.
type Mgmt struct {
	NIC NIC
	// DHCP asks a DHCP server for the address, gateway and DNS.
	DHCP bool
	// Address is the static address with its prefix; Gateway and DNS may be unset.
	Address netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
}

// Trunk is a bridge on one uplink, or on two bonded ones (active-backup),
// carrying one or more guest networks, each on its VLAN.
type Trunk struct {
	// Bridge is the bridge's name (hvbr0, hvbr1, …).
	Bridge string
	// Bond is the bond's name when there are two uplinks (hvbond0, …).
	Bond string
	// Uplinks are the NICs.
	Uplinks []NIC
	// Networks are the guest networks on the trunk.
	Networks []TrunkNetwork
}

// TrunkNetwork is a guest network on a trunk: its frames carry VLAN tag
// VLAN on the wire (0: untagged) and VID inside the bridge, where the
// untagged network takes a VID no tagged network on the trunk uses.
type TrunkNetwork struct {
	Name string
	VLAN int
	VID  int
}

// Port is the bridge port that carries the trunk's traffic: the bond, or
// the single uplink.
func (t Trunk) Port() string {
	if t.Bond != "" {
		return t.Bond
	}
	return t.Uplinks[0].Name
}

// NewPlan decides the host's networks from c (with this host's overrides
// applied) and the NICs Discover found. Every NIC a network names must be
// present; the management NIC is management.nic.mac's, or else the first
// Ethernet NIC by PCI address that no network uses.
func NewPlan(c *config.Config, nics []NIC) (*Plan, error) {
	byMAC := map[string]NIC{}
	for _, n := range nics {
		byMAC[n.MAC] = n
	}
	p := &Plan{}
	used := map[string]bool{}
	var errs []string
	trunkOf := map[string]int{} // sorted uplink MACs -> trunk index
	for i, n := range c.Networks {
		var ups []NIC
		var macs []string
		for j, u := range n.Uplinks {
			mac := strings.ToLower(u.MAC)
			nic, ok := byMAC[mac]
			if !ok {
				errs = append(errs, fmt.Sprintf("networks[%d].uplinks[%d].mac: no NIC with MAC %s on this machine", i, j, mac))
				continue
			}
			ups = append(ups, nic)
			macs = append(macs, mac)
			used[mac] = true
		}
		if len(ups) != len(n.Uplinks) {
			continue
		}
		slices.Sort(macs)
		key := strings.Join(macs, ",")
		k, ok := trunkOf[key]
		if !ok {
			k = len(p.Trunks)
			trunkOf[key] = k
			t := Trunk{Bridge: "hvbr" + strconv.Itoa(k), Uplinks: ups}
			if len(ups) > 1 {
				t.Bond = "hvbond" + strconv.Itoa(k)
			}
			p.Trunks = append(p.Trunks, t)
		}
		p.Trunks[k].Networks = append(p.Trunks[k].Networks, TrunkNetwork{Name: n.Name, VLAN: n.VLAN, VID: n.VLAN})
	}
	for i := range p.Trunks {
		assignUntaggedVID(&p.Trunks[i])
	}
	m := c.Management
	var mgmt *NIC
	if m.NIC.MAC != "" {
		mac := strings.ToLower(m.NIC.MAC)
		if n, ok := byMAC[mac]; ok {
			mgmt = &n
		} else {
			errs = append(errs, fmt.Sprintf("management.nic.mac: no NIC with MAC %s on this machine", mac))
		}
	} else {
		for _, n := range nics {
			if !used[n.MAC] {
				mgmt = &n
				break
			}
		}
	}
	if mgmt != nil {
		mp := &Mgmt{NIC: *mgmt, DHCP: m.Address == config.AddressDHCP}
		if !mp.DHCP {
			a, err := netip.ParsePrefix(m.Address)
			if err != nil {
				errs = append(errs, fmt.Sprintf("management.address: %v", err))
			}
			mp.Address = a
			if m.Gateway != "" {
				if mp.Gateway, err = netip.ParseAddr(m.Gateway); err != nil {
					errs = append(errs, fmt.Sprintf("management.gateway: %v", err))
				}
			}
		}
		for i, d := range m.DNS {
			a, err := netip.ParseAddr(d)
			if err != nil {
				errs = append(errs, fmt.Sprintf("management.dns[%d]: %v", i, err))
				continue
			}
			mp.DNS = append(mp.DNS, a)
		}
		p.Mgmt = mp
		used[mgmt.MAC] = true
	}
	for _, n := range nics {
		if !used[n.MAC] {
			p.Down = append(p.Down, n)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("network: %s", strings.Join(errs, "; "))
	}
	return p, nil
}

// assignUntaggedVID gives the trunk's untagged network, if any, the highest
// VID that no tagged network on the trunk uses.
func assignUntaggedVID(t *Trunk) {
	taken := map[int]bool{}
	for _, n := range t.Networks {
		taken[n.VLAN] = true
	}
	for i, n := range t.Networks {
		if n.VLAN != 0 {
			continue
		}
		for vid := 4094; vid > 0; vid-- {
			if !taken[vid] {
				t.Networks[i].VID = vid
				taken[vid] = true
				break
			}
		}
	}
}

// Applied is what Apply set up.
type Applied struct {
	// Plan is what was applied.
	Plan *Plan
	// Namespace is the management namespace's path; empty without a
	// management NIC.
	Namespace string
	// DHCP keeps the management lease; nil for a static address.
	DHCP LeaseKeeper
}

// LeaseKeeper is a running DHCP client.
type LeaseKeeper interface {
	// Lease gives the current lease; false before the first.
	Lease() (Lease, bool)
	// Ready is closed once the first lease is applied.
	Ready() <-chan struct{}
	// Close stops the client, leaving the lease in place.
	Close()
}

// Lease is the management address a DHCP server gave.
type Lease struct {
	Address netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
	Server  netip.Addr
}

// WriteResolvConf writes a resolv.conf(5) naming the name servers.
func WriteResolvConf(w io.Writer, dns []netip.Addr) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# written by hardvisor PID 1 for the management namespace")
	for _, a := range dns {
		fmt.Fprintf(bw, "nameserver %s\n", a)
	}
	return bw.Flush()
}

// Describe is a trunk as the status report shows it:
// "hvbr0: hvbond0 (eth1 eth2) prod/100 lab/untagged".
func (t Trunk) Describe() string {
	var b strings.Builder
	b.WriteString(t.Bridge + ": " + t.Port())
	if t.Bond != "" {
		var ups []string
		for _, u := range t.Uplinks {
			ups = append(ups, u.Name)
		}
		b.WriteString(" (" + strings.Join(ups, " ") + ")")
	}
	for _, n := range t.Networks {
		v := "untagged"
		if n.VLAN != 0 {
			v = strconv.Itoa(n.VLAN)
		}
		b.WriteString(" " + n.Name + "/" + v)
	}
	return b.String()
}
