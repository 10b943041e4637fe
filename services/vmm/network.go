package vmm

import (
	"fmt"
	"strconv"
	"strings"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/init/network"
)

// Guests resolves c's guests (c with this host's overrides applied) with
// the bridge and VID of each one's network, exactly as PID 1 lays them out
// with network.NewPlan. Bridge names and VIDs follow from the config's
// networks alone (their order and uplink sets), not from the NICs' names,
// so the plan is made over NICs standing in for the config's MACs: vmm
// runs after PID 1 moved the management NIC into its namespace, where it
// could not find it again, and bond slaves no longer show their own MACs.
func Guests(c *config.Config) ([]Guest, error) {
	var nics []network.NIC
	seen := map[string]bool{}
	add := func(mac string) {
		mac = strings.ToLower(mac)
		if mac == "" || seen[mac] {
			return
		}
		seen[mac] = true
		nics = append(nics, network.NIC{Name: "nic" + strconv.Itoa(len(nics)), MAC: mac})
	}
	for _, n := range c.Networks {
		for _, u := range n.Uplinks {
			add(u.MAC)
		}
	}
	add(c.Management.NIC.MAC)
	plan, err := network.NewPlan(c, nics)
	if err != nil {
		return nil, err
	}
	type port struct {
		bridge string
		vid    int
	}
	ports := map[string]port{}
	for _, t := range plan.Trunks {
		for _, n := range t.Networks {
			ports[n.Name] = port{t.Bridge, n.VID}
		}
	}
	var out []Guest
	var errs []string
	for i, s := range c.GuestSpecs() {
		p, ok := ports[s.Network]
		if !ok {
			errs = append(errs, fmt.Sprintf("guests[%d].network: no network %q", i, s.Network))
			continue
		}
		out = append(out, Guest{Spec: s, Bridge: p.bridge, VID: p.vid})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("vmm: %s", strings.Join(errs, "; "))
	}
	return out, nil
}
