package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DHCPClient keeps the management NIC's lease: it asks for one until it
// gets it, renews it at the server's renewal time (T1, half the lease by
// default) and starts over when a renewal fails.
type DHCPClient struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{}
	once   sync.Once

	mu    sync.Mutex
	lease *Lease
}

// StartDHCP opens a DHCP client on the NIC inside ns (its raw socket is
// created there and stays there) and runs it in the background.
func StartDHCP(ns netns.NsHandle, h *netlink.Handle, nic netlink.Link, m *Mgmt, opts Options) (*DHCPClient, error) {
	var client *nclient4.Client
	err := InNamespace(ns, func() (err error) {
		client, err = nclient4.New(m.NIC.Name, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(2))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("DHCP client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &DHCPClient{ctx: ctx, cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
	go c.run(client, h, nic, m, opts)
	return c, nil
}

func (c *DHCPClient) run(client *nclient4.Client, h *netlink.Handle, nic netlink.Link, m *Mgmt, opts Options) {
	defer close(c.done)
	defer client.Close()
	wait := time.Second
	// A DHCP transaction ID comes from getrandom, which waits until the
	// kernel's random pool is ready: on a machine with no hardware RNG
	// (no RDRAND, no virtio-rng) that can take minutes. Say so.
	if _, err := unix.Getrandom(make([]byte, 1), unix.GRND_NONBLOCK); errors.Is(err, unix.EAGAIN) {
		opts.Logf("management: DHCP on %s waits for the kernel's random pool (no hardware RNG on this machine?)", m.NIC.Name)
	}
	for c.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		lease, err := client.Request(ctx)
		cancel()
		if err != nil {
			opts.Logf("management: DHCP on %s: %v; asking again in %s", m.NIC.Name, err, wait)
			if !c.sleep(wait) {
				return
			}
			wait = min(2*wait, 30*time.Second)
			continue
		}
		wait = time.Second
		for {
			l, err := leaseOf(lease.ACK, m.DNS)
			if err == nil {
				err = setAddress(h, nic, l)
			}
			if err == nil {
				err = writeResolvConf(opts.ResolvConf, l.DNS)
			}
			if err != nil {
				opts.Logf("management: DHCP lease on %s: %v", m.NIC.Name, err)
				break
			}
			c.mu.Lock()
			changed := c.lease == nil || c.lease.Address != l.Address
			c.lease = &l
			c.mu.Unlock()
			if changed {
				opts.Logf("management: %s %s via %s in namespace %s (DHCP from %s)", m.NIC.Name, l.Address, l.Gateway, Namespace, l.Server)
			}
			c.once.Do(func() { close(c.ready) })
			t1 := lease.ACK.IPAddressRenewalTime(lease.ACK.IPAddressLeaseTime(time.Hour) / 2)
			if !c.sleep(t1) {
				return
			}
			if lease, err = client.Renew(c.ctx, lease); err != nil {
				opts.Logf("management: DHCP renewal on %s: %v; asking for a new lease", m.NIC.Name, err)
				break
			}
		}
	}
}

func (c *DHCPClient) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// leaseOf reads the address, gateway and name servers from an ACK; name
// servers the config sets win over the server's.
func leaseOf(ack *dhcpv4.DHCPv4, dns []netip.Addr) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("ACK without an address")
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		bits, _ = m.Size()
	}
	l := Lease{Address: netip.PrefixFrom(ip, bits), DNS: dns}
	if r := ack.Router(); len(r) > 0 {
		l.Gateway = addrOf(r[0])
	}
	if s := ack.ServerIdentifier(); s != nil {
		l.Server = addrOf(s)
	}
	if len(dns) == 0 {
		for _, d := range ack.DNS() {
			if a := addrOf(d); a.IsValid() {
				l.DNS = append(l.DNS, a)
			}
		}
	}
	return l, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// Ready is closed once the first lease is applied.
func (c *DHCPClient) Ready() <-chan struct{} { return c.ready }

// Lease gives the current lease; false before the first.
func (c *DHCPClient) Lease() (Lease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease == nil {
		return Lease{}, false
	}
	return *c.lease, true
}

// Close stops the client (the lease is left in place).
func (c *DHCPClient) Close() {
	c.cancel()
	<-c.done
}
