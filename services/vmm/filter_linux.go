package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
)

// FilterTable is vmm's nftables table, family netdev: one chain per
// running guest's tap on the tap's ingress hook, so it sees every frame the
// guest sends before the bridge forwards or delivers it.
const FilterTable = "hardvisor-vmm"

// Ether types.
const (
	etherIPv4  = 0x0800
	etherARP   = 0x0806
	etherIPv6  = 0x86dd
	ether8021Q = 0x8100
	ether8021S = 0x88a8
)

// Port is a guest's bridge port: its tap, the MAC it may send from and,
// when not empty, the only IP addresses it may send from.
type Port struct {
	Tap   string
	MAC   net.HardwareAddr
	Addrs []netip.Addr
}

// PortChain is the name of port tap's chain.
func PortChain(tap string) string { return "port-" + tap }

// PortRules gives the rules of a port's chain, in order. Every frame with
// another source MAC, and every VLAN-tagged frame, is dropped; with
// addresses, IPv4 and ARP (sender MAC and IP checked too) and IPv6 pass
// only from them and everything else is dropped. Without addresses the
// chain returns, and the frame goes on.
func PortRules(p Port) [][]expr.Any {
	etherType := func(t uint16) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, t)},
		}
	}
	field := func(base expr.PayloadBase, off uint32, want []byte) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(want))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: want},
		}
	}
	verdict := func(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }
	mac := []byte(p.MAC)
	rules := [][]expr.Any{
		{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: mac},
			verdict(expr.VerdictDrop),
		},
		append(etherType(ether8021Q), verdict(expr.VerdictDrop)),
		append(etherType(ether8021S), verdict(expr.VerdictDrop)),
	}
	if len(p.Addrs) == 0 {
		return rules
	}
	v6 := false
	for _, a := range p.Addrs {
		a = a.Unmap()
		if a.Is4() {
			ip := a.AsSlice()
			rules = append(rules,
				slices.Concat(etherType(etherIPv4), field(expr.PayloadBaseNetworkHeader, 12, ip), []expr.Any{verdict(expr.VerdictAccept)}),
				// ARP for Ethernet/IPv4: sender MAC at 8, sender IP at 14.
				slices.Concat(etherType(etherARP), field(expr.PayloadBaseNetworkHeader, 8, mac),
					field(expr.PayloadBaseNetworkHeader, 14, ip), []expr.Any{verdict(expr.VerdictAccept)}))
			continue
		}
		v6 = true
		rules = append(rules, slices.Concat(etherType(etherIPv6), field(expr.PayloadBaseNetworkHeader, 8, a.AsSlice()),
			[]expr.Any{verdict(expr.VerdictAccept)}))
	}
	if v6 {
		// Duplicate address detection sends from the unspecified address.
		rules = append(rules, slices.Concat(etherType(etherIPv6),
			field(expr.PayloadBaseNetworkHeader, 8, netip.IPv6Unspecified().AsSlice()), []expr.Any{verdict(expr.VerdictAccept)}))
	}
	return append(rules, []expr.Any{verdict(expr.VerdictDrop)})
}

// hostNet is the network namespace that holds the bridges and the guests'
// taps: where vmm sets up ports and the filter.
type hostNet struct {
	ns netns.NsHandle // -1: the current namespace
	h  *netlink.Handle
}

// openHostNet opens the namespace at path; "" is the current one.
func openHostNet(path string) (*hostNet, error) {
	n := &hostNet{ns: -1}
	var err error
	if path != "" {
		if n.ns, err = netns.GetFromPath(path); err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", path, err)
		}
		n.h, err = netlink.NewHandleAt(n.ns, unix.NETLINK_ROUTE)
	} else {
		// Route alone: a handle for every family fails on a kernel
		// without the xfrm module.
		n.h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return n, nil
}

func (n *hostNet) Close() {
	if n.h != nil {
		n.h.Close()
	}
	if n.ns >= 0 {
		n.ns.Close()
	}
}

func (n *hostNet) nft() (*nftables.Conn, error) {
	if n.ns >= 0 {
		return nftables.New(nftables.WithNetNSFd(int(n.ns)))
	}
	return nftables.New()
}

// ApplyFilter replaces FilterTable with the chains of ports, in one
// transaction; with no ports the table is removed. Each port's chain hooks
// the ingress of its tap (family netdev, built into nf_tables): it sees
// every frame the guest sends before the bridge does, and needs no module
// the host could no longer load once it has disabled module loading.
func (n *hostNet) ApplyFilter(ports []Port) error {
	c, err := n.nft()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyNetdev, Name: FilterTable}
	// Adding first makes the delete succeed whether or not the table exists.
	c.AddTable(t)
	c.DelTable(t)
	if len(ports) > 0 {
		c.AddTable(t)
		accept := nftables.ChainPolicyAccept
		for _, p := range ports {
			ch := c.AddChain(&nftables.Chain{Name: PortChain(p.Tap), Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityRef(-500), Device: p.Tap, Policy: &accept})
			for _, r := range PortRules(p) {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r})
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: table netdev %s: %w", FilterTable, err)
	}
	return nil
}

// FilterChains lists the chains of FilterTable (none when it is absent).
func (n *hostNet) FilterChains() ([]string, error) {
	c, err := n.nft()
	if err != nil {
		return nil, err
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == FilterTable && ch.Table.Family == nftables.TableFamilyNetdev {
			out = append(out, ch.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// SetAccessPort makes tap, which libvirt put on bridge, an access port of
// VLAN vid: vid untagged and as PVID, and no other VLAN (the kernel's
// default VID 1 removed). It reads the membership back. A bridge without
// VLAN filtering is refused unless noVLAN: its ports would all share one
// segment.
func (n *hostNet) SetAccessPort(tap, bridge string, vid int, noVLAN bool) error {
	l, err := n.h.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("tap %s: %w", tap, err)
	}
	br, err := n.h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("tap %s is not a port of bridge %s", tap, bridge)
	}
	if noVLAN {
		return nil
	}
	if b, ok := br.(*netlink.Bridge); !ok || b.VlanFiltering == nil || !*b.VlanFiltering {
		return fmt.Errorf("bridge %s does not filter VLANs: refusing to plug %s into it", bridge, tap)
	}
	if vid < 1 || vid > 4094 {
		return fmt.Errorf("tap %s: VID %d outside 1..4094", tap, vid)
	}
	if vid != 1 {
		if err := n.h.BridgeVlanDel(l, 1, false, false, false, true); err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("tap %s: remove VID 1: %w", tap, err)
		}
	}
	if err := n.h.BridgeVlanAdd(l, uint16(vid), true, true, false, true); err != nil {
		return fmt.Errorf("tap %s: VID %d: %w", tap, vid, err)
	}
	all, err := n.h.BridgeVlanList()
	if err != nil {
		return fmt.Errorf("tap %s: read VLANs: %w", tap, err)
	}
	got := all[int32(l.Attrs().Index)]
	if len(got) != 1 || got[0].Vid != uint16(vid) || !got[0].PortVID() || !got[0].EngressUntag() {
		return fmt.Errorf("tap %s: VLANs read back as %v, want only %d untagged PVID", tap, vlanList(got), vid)
	}
	return nil
}

func vlanList(vs []*nl.BridgeVlanInfo) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return out
}

// ifname is an interface name as nftables compares it: NUL-padded to IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}
