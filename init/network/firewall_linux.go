package network

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// FirewallTable is the root namespace's nftables table.
const FirewallTable = "hardvisor"

// InstallFirewall replaces the root namespace's ruleset with the host's: in
// family inet, input and output accept only loopback and drop the rest,
// forward drops everything. The root namespace holds no address on any
// guest network (bridged guest traffic does not pass these hooks), so this
// is the second wall: should an address appear on the guest side, nothing
// addressed to the host gets an answer. The management namespace has its
// own network stack and is not affected.
func InstallFirewall() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	c.FlushRuleset()
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: FirewallTable})
	drop := nftables.ChainPolicyDrop
	for _, h := range []struct {
		name    string
		hook    *nftables.ChainHook
		loopKey expr.MetaKey
	}{
		{"input", nftables.ChainHookInput, expr.MetaKeyIIFNAME},
		{"forward", nftables.ChainHookForward, 0},
		{"output", nftables.ChainHookOutput, expr.MetaKeyOIFNAME},
	} {
		ch := c.AddChain(&nftables.Chain{Name: h.name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: h.hook, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if h.loopKey == 0 {
			continue
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: h.loopKey, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install table %s: %w", FirewallTable, err)
	}
	return nil
}

// ifname is an interface name as nftables compares it: NUL-padded to IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}
