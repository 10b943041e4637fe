package boot

import (
	"net/netip"
	"path/filepath"
	"strings"

	"hardvisor.dev/hardvisor/init/network"
	"hardvisor.dev/hardvisor/services/status"
)

// Network lays out the host's networks before any service starts: the
// management NIC in its own namespace, the guest uplinks as bridges without
// a host address, the firewall, the other NICs down (see package network).
// A NIC the config names that the machine lacks stops the boot.
type Network struct {
	Host *Host
	// Sysfs is where sysfs is mounted ("/sys").
	Sysfs string
}

func (Network) String() string { return "network" }

// Run plans from the config and the NICs found, and applies the plan.
func (s Network) Run() error {
	nics, err := network.Discover(filepath.Join(s.Sysfs, "class/net"))
	if err != nil {
		return err
	}
	p, err := network.NewPlan(s.Host.Config, nics)
	if err != nil {
		return err
	}
	if p.Mgmt == nil {
		s.Host.Logf("management: no Ethernet NIC: this host cannot be managed over the network")
	}
	var nsSysctls []network.Sysctl
	for _, sc := range HardeningSysctls {
		// The namespace's own network stack starts with the defaults.
		if strings.HasPrefix(sc.Key, "net.") && !sc.IfPresent && !strings.HasPrefix(sc.Key, "net.core.") {
			nsSysctls = append(nsSysctls, network.Sysctl{Key: sc.Key, Value: sc.Value})
		}
	}
	a, err := network.Apply(p, network.Options{Logf: s.Host.Logf, NamespaceSysctls: nsSysctls})
	if err != nil {
		return err
	}
	s.Host.Network = a
	return nil
}

// networkReport is the network part of the status report.
func (h *Host) networkReport() *status.Network {
	a := h.Network
	if a == nil || a.Plan == nil {
		return nil
	}
	n := &status.Network{Namespace: a.Namespace}
	if m := a.Plan.Mgmt; m != nil {
		n.MgmtNIC, n.DHCP = m.NIC.Name, m.DHCP
		if m.DHCP {
			if a.DHCP != nil {
				if l, ok := a.DHCP.Lease(); ok {
					n.Address, n.Gateway = l.Address.String(), addrString(l.Gateway)
				}
			}
		} else {
			n.Address, n.Gateway = m.Address.String(), addrString(m.Gateway)
		}
		n.NamespaceLinks, _ = network.NamespaceLinks(a.Namespace)
	}
	for _, t := range a.Plan.Trunks {
		n.Bridges = append(n.Bridges, t.Describe())
	}
	for _, d := range a.Plan.Down {
		n.Down = append(n.Down, d.Name)
	}
	return n
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
