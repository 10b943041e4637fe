package network

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/services/kernfs"
)

// Options tune Apply.
type Options struct {
	// NamespacePath is where the management namespace is bind-mounted;
	// default NamespacePath.
	NamespacePath string
	// ResolvConf receives the management name servers; default
	// /etc/resolv.conf (only the management services resolve names).
	ResolvConf string
	// Logf reports what Apply and the DHCP client do; nil discards.
	Logf func(format string, args ...any)
	// NoFirewall leaves the root namespace's nftables ruleset alone (tests
	// of the management namespace alone).
	NoFirewall bool
	// NamespaceSysctls are applied inside the management namespace, which
	// starts with the kernel's defaults: the hardening net.* settings.
	NamespaceSysctls []Sysctl
}

// Apply carries out p: the root namespace's forwarding and IPv6 settings
// first (so new links inherit them), the unused NICs down, the trunks,
// the firewall, and last the management namespace with its NIC. With DHCP
// it returns once the client runs; the lease comes in the background.
func Apply(p *Plan, opts Options) (*Applied, error) {
	if opts.NamespacePath == "" {
		opts.NamespacePath = NamespacePath
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	for _, s := range RootSysctls {
		if err := writeSysctl(s.Key, s.Value); err != nil {
			return nil, err
		}
	}
	for _, n := range p.Down {
		if err := keepDown(n.Name); err != nil {
			return nil, err
		}
	}
	for _, t := range p.Trunks {
		if err := applyTrunk(t); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", t.Bridge, err)
		}
	}
	if !opts.NoFirewall {
		if err := InstallFirewall(); err != nil {
			return nil, err
		}
	}
	a := &Applied{Plan: p}
	if p.Mgmt == nil {
		return a, nil
	}
	ns, err := createNamespace(opts.NamespacePath)
	if err != nil {
		return nil, err
	}
	a.Namespace = opts.NamespacePath
	if err := applyMgmt(ns, p.Mgmt, opts, a); err != nil {
		return nil, fmt.Errorf("management NIC %s: %w", p.Mgmt.NIC.Name, err)
	}
	return a, nil
}

// Sysctl is a network setting of a namespace.
type Sysctl struct{ Key, Value string }

// RootSysctls are the root namespace's: the guest side has no IPv6, the
// host forwards nothing and its bridges never answer ARP for another
// interface's address.
var RootSysctls = []Sysctl{
	{"net.ipv6.conf.all.disable_ipv6", "1"},
	{"net.ipv6.conf.default.disable_ipv6", "1"},
	{"net.ipv4.ip_forward", "0"},
	{"net.ipv4.conf.all.forwarding", "0"},
	{"net.ipv4.conf.default.forwarding", "0"},
	{"net.ipv4.conf.all.arp_ignore", "2"},
	{"net.ipv4.conf.default.arp_ignore", "2"},
	{"net.ipv4.conf.all.arp_announce", "2"},
}

func writeSysctl(key, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := kernfs.Write(p, value); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// disableIPv6 turns IPv6 off on one interface before it comes up, so it
// never gets a link-local address.
func disableIPv6(name string) error {
	return writeSysctl("net.ipv6.conf."+name+".disable_ipv6", "1")
}

func keepDown(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("NIC %s: %w", name, err)
	}
	if err := disableIPv6(name); err != nil {
		return err
	}
	return netlink.LinkSetDown(l)
}

// applyTrunk builds the trunk's bond (two uplinks, active-backup), its
// VLAN-filtering bridge with no VLAN on the bridge itself, and the port's
// VLAN membership: tagged VLANs as they are, the untagged network as the
// port's PVID.
func applyTrunk(t Trunk) error {
	var ups []netlink.Link
	for _, u := range t.Uplinks {
		l, err := netlink.LinkByName(u.Name)
		if err != nil {
			return fmt.Errorf("uplink %s: %w", u.Name, err)
		}
		if err := disableIPv6(u.Name); err != nil {
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		ups = append(ups, l)
	}
	port := ups[0]
	if t.Bond != "" {
		b := netlink.NewLinkBond(netlink.LinkAttrs{Name: t.Bond})
		b.Mode = netlink.BOND_MODE_ACTIVE_BACKUP
		b.Miimon = 100
		if err := netlink.LinkAdd(b); err != nil {
			return fmt.Errorf("add bond %s: %w", t.Bond, err)
		}
		if err := disableIPv6(t.Bond); err != nil {
			return err
		}
		for _, u := range ups {
			if err := netlink.LinkSetBondSlave(u, b); err != nil {
				return fmt.Errorf("enslave %s to %s: %w", u.Attrs().Name, t.Bond, err)
			}
		}
		bl, err := netlink.LinkByName(t.Bond)
		if err != nil {
			return err
		}
		port = bl
	}
	yes, none := true, uint16(0)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: t.Bridge}, VlanFiltering: &yes, VlanDefaultPVID: &none}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	if err := disableIPv6(t.Bridge); err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("add port %s: %w", port.Attrs().Name, err)
	}
	for _, n := range t.Networks {
		untagged := n.VLAN == 0
		if err := netlink.BridgeVlanAdd(port, uint16(n.VID), untagged, untagged, false, true); err != nil {
			return fmt.Errorf("network %s: VLAN %d on %s: %w", n.Name, n.VID, port.Attrs().Name, err)
		}
	}
	for _, l := range append(ups, port, br) {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// createNamespace makes a new network namespace and bind-mounts it at path,
// as `ip netns add` does, leaving the calling thread where it was.
func createNamespace(path string) (netns.NsHandle, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return 0, fmt.Errorf("namespace %s: %w", path, err)
	}
	f.Close()
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("namespace %s: %w", path, err)
	}
	return netns.GetFromPath(path)
}

// onThread runs f on a locked OS thread and puts the thread back into the
// process's network namespace afterwards; a thread that cannot be put back
// is left locked, so Go retires it when the goroutine ends.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// InNamespace runs f on a thread inside ns (sockets f opens stay there).
func InNamespace(ns netns.NsHandle, f func() error) error {
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
		return f()
	})
}

// applyMgmt moves the NIC into ns and configures it there.
func applyMgmt(ns netns.NsHandle, m *Mgmt, opts Options, a *Applied) error {
	l, err := netlink.LinkByName(m.NIC.Name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		return fmt.Errorf("move into %s: %w", opts.NamespacePath, err)
	}
	// Route only: a handle of every family would need xfrm_user and
	// nfnetlink, which the image need not load.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("up lo: %w", err)
	}
	nic, err := h.LinkByName(m.NIC.Name)
	if err != nil {
		return err
	}
	// IPv4 only: no link-local address, no router advertisements.
	err = InNamespace(ns, func() error {
		for _, sc := range opts.NamespaceSysctls {
			if err := writeSysctl(sc.Key, sc.Value); err != nil {
				return err
			}
		}
		return disableIPv6(m.NIC.Name)
	})
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(nic); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if !m.DHCP {
		if err := setAddress(h, nic, Lease{Address: m.Address, Gateway: m.Gateway}); err != nil {
			return err
		}
		opts.Logf("management: %s %s in namespace %s", m.NIC.Name, m.Address, Namespace)
		return writeResolvConf(opts.ResolvConf, m.DNS)
	}
	c, err := StartDHCP(ns, h, nic, m, opts)
	if err != nil {
		return err
	}
	a.DHCP = c
	return nil
}

// setAddress gives the NIC exactly the lease's address and default route.
func setAddress(h *netlink.Handle, nic netlink.Link, l Lease) error {
	addrs, err := h.AddrList(nic, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	want := prefixToIPNet(l.Address)
	for _, a := range addrs {
		if a.IPNet.String() != want.String() {
			if err := h.AddrDel(nic, &a); err != nil {
				return fmt.Errorf("remove %s: %w", a.IPNet, err)
			}
		}
	}
	if err := h.AddrReplace(nic, &netlink.Addr{IPNet: want}); err != nil {
		return fmt.Errorf("address %s: %w", l.Address, err)
	}
	if l.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: nic.Attrs().Index, Gw: net.IP(l.Gateway.AsSlice())}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", l.Gateway, err)
		}
	}
	return nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func writeResolvConf(path string, dns []netip.Addr) error {
	if len(dns) == 0 {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteResolvConf(f, dns); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// NamespaceLinks lists the interfaces in the namespace at path, sorted.
func NamespaceLinks(path string) ([]string, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names, nil
}
