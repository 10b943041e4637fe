package network

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed test binary that runs inside fresh network
// and mount namespaces, where Apply may rearrange the whole network.
const childEnv = "HARDVISOR_NETWORK_TEST_CHILD"

// inFreshNamespaces re-runs the calling test in new network and mount
// namespaces (util-linux unshare), so Apply's root-namespace changes (IPv6
// off, the firewall, bridges) never touch this machine.
func inFreshNamespaces(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == "1" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) not found")
	}
	cmd := exec.Command(unshare, "--net", "--mount", "--propagation", "private", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in fresh namespaces:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("child run failed: %v", err)
	}
	return false
}

// vethPair makes a veth pair standing in for a NIC and its wire's far end.
func vethPair(t *testing.T, name string) NIC {
	t.Helper()
	mac, _ := net.ParseMAC("52:54:00:00:00:" + name[len(name)-2:])
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}, PeerName: name + "p"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	peer, _ := netlink.LinkByName(name + "p")
	netlink.LinkSetUp(peer)
	return NIC{Name: name, MAC: mac.String()}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestApply builds a static management namespace and a NIC kept down from
// veth pairs, then reads every setting back. (This machine's kernel has no
// bridge or bonding; TestNetwork in qemu-tests checks the trunks on the
// image's own kernel.)
func TestApply(t *testing.T) {
	if !inFreshNamespaces(t) {
		return
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	m, d := vethPair(t, "m01"), vethPair(t, "d04")
	p := &Plan{
		Mgmt: &Mgmt{NIC: m, Address: netip.MustParsePrefix("192.0.2.11/24"), Gateway: netip.MustParseAddr("192.0.2.1"),
			DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}},
		Down: []NIC{d},
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	a, err := Apply(p, Options{ResolvConf: resolv, NamespaceSysctls: []Sysctl{{"net.ipv4.conf.all.accept_redirects", "0"}}})
	if err != nil {
		t.Fatal(err)
	}

	// The management namespace holds exactly lo and the NIC, configured.
	ns, err := netns.GetFromPath(NamespacePath)
	if err != nil {
		t.Fatal(err)
	}
	if a.Namespace != NamespacePath {
		t.Errorf("Applied.Namespace = %q", a.Namespace)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	links, _ := h.LinkList()
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	if slices.Sort(names); !slices.Equal(names, []string{"lo", "m01"}) {
		t.Errorf("management namespace links = %v, want lo and m01", names)
	}
	ml, _ := h.LinkByName("m01")
	addrs, _ := h.AddrList(ml, netlink.FAMILY_ALL)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "192.0.2.11/24" {
		t.Errorf("m01 addresses = %v, want only 192.0.2.11/24 (no IPv6 link-local)", addrs)
	}
	routes, _ := h.RouteList(ml, netlink.FAMILY_V4)
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "192.0.2.1"
	}) {
		t.Errorf("no default route via 192.0.2.1: %v", routes)
	}
	if got := read(t, resolv); got != "# written by hardvisor PID 1 for the management namespace\nnameserver 192.0.2.53" {
		t.Errorf("resolv.conf = %q", got)
	}
	if _, err := netlink.LinkByName("m01"); err == nil {
		t.Error("m01 is still in the root namespace")
	}

	for key, want := range map[string]string{
		"/proc/sys/net/ipv6/conf/all/disable_ipv6": "1", "/proc/sys/net/ipv6/conf/d04/disable_ipv6": "1",
		"/proc/sys/net/ipv4/ip_forward": "0", "/proc/sys/net/ipv4/conf/all/arp_ignore": "2",
	} {
		if got := read(t, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if dl, _ := netlink.LinkByName("d04"); dl.Attrs().Flags&net.FlagUp != 0 {
		t.Error("d04 is up")
	}
	// The namespace's own stack got the hardening settings it was given.
	var syncookies string
	if err := InNamespace(ns, func() error { syncookies = read(t, "/proc/sys/net/ipv4/conf/all/accept_redirects"); return nil }); err != nil || syncookies != "0" {
		t.Errorf("accept_redirects in the namespace = %q (%v), want 0", syncookies, err)
	}

	// The firewall: input, forward and output drop by default.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var chainNames []string
	for _, ch := range chains {
		if ch.Table.Name == FirewallTable && ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			chainNames = append(chainNames, ch.Name)
		}
	}
	if slices.Sort(chainNames); !slices.Equal(chainNames, []string{"forward", "input", "output"}) {
		t.Errorf("drop chains in table %s = %v", FirewallTable, chainNames)
	}
}

// TestDHCP gets the management address from a real DHCP server (the
// insomniacslk server4) on the wire's far end, in the root namespace.
func TestDHCP(t *testing.T) {
	if !inFreshNamespaces(t) {
		return
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	m := vethPair(t, "m05")
	peer, _ := netlink.LinkByName("m05p")
	netlink.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 51, 100, 1), Mask: net.CIDRMask(24, 32)}})
	srv, err := server4.NewServer("m05p", &net.UDPAddr{IP: net.IPv4zero, Port: 67}, func(conn net.PacketConn, peerAddr net.Addr, req *dhcpv4.DHCPv4) {
		typ := dhcpv4.MessageTypeOffer
		if req.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
		}
		resp, err := dhcpv4.NewReplyFromRequest(req,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(198, 51, 100, 50)),
			dhcpv4.WithServerIP(net.IPv4(198, 51, 100, 1)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 51, 100, 1))),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(net.IPv4(198, 51, 100, 1)),
			dhcpv4.WithDNS(net.IPv4(198, 51, 100, 53)),
			dhcpv4.WithLeaseTime(3600))
		if err != nil {
			return
		}
		conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 68})
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	a, err := Apply(&Plan{Mgmt: &Mgmt{NIC: m, DHCP: true}}, Options{ResolvConf: resolv, NoFirewall: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer a.DHCP.Close()
	select {
	case <-a.DHCP.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("no lease within 30s")
	}
	l, _ := a.DHCP.Lease()
	want := Lease{Address: netip.MustParsePrefix("198.51.100.50/24"), Gateway: netip.MustParseAddr("198.51.100.1"),
		DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}, Server: netip.MustParseAddr("198.51.100.1")}
	if l.Address != want.Address || l.Gateway != want.Gateway || !slices.Equal(l.DNS, want.DNS) || l.Server != want.Server {
		t.Errorf("lease = %+v, want %+v", l, want)
	}
	mns, err := netns.GetFromPath(a.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := netlink.NewHandleAt(mns)
	ml, _ := h.LinkByName("m05")
	addrs, _ := h.AddrList(ml, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "198.51.100.50/24" {
		t.Errorf("m05 addresses = %v", addrs)
	}
	if got := read(t, resolv); !strings.HasSuffix(got, "nameserver 198.51.100.53") {
		t.Errorf("resolv.conf = %q", got)
	}
}
