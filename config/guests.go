package config

import (
	"crypto/sha256"
	"fmt"
	"slices"
)

// GuestOverhead is what a guest's memory ceiling (limits.memory) allows
// QEMU beyond the guest's RAM when the template leaves the ceiling unset:
// QEMU's own heap, TCG's translation cache, device state.
const GuestOverhead = 256 * Mi

// GuestSpec is a guest as the host runs it: its template with the guest's
// overrides applied and every default filled in.
type GuestSpec struct {
	Name      string
	Template  string
	Network   string
	Domain    string
	Autostart bool
	CPUs      int
	// Memory is the guest's RAM.
	Memory Size
	// Disk is the disk's size; Image, when set, is copied to the disk on
	// first start (a path relative to the config file on the build host;
	// inside the image, GuestImagePath).
	Disk  Size
	Image string
	// Limits has Memory and CPUWeight filled in.
	Limits    Limits
	MAC       string
	Addresses []string
}

// GuestImageDir is where the boot image carries the guests' disk images,
// one file per guest that has one: GuestImageDir/<guest>.img.
const GuestImageDir = "/usr/share/hardvisor/images"

// GuestImagePath is where the boot image carries the disk image of guest
// name.
func GuestImagePath(name string) string { return GuestImageDir + "/" + name + ".img" }

// GuestSpecs resolves every guest of c, in order. A guest whose template is
// unknown (which Parse refuses) is left out.
func (c *Config) GuestSpecs() []GuestSpec {
	var out []GuestSpec
	for _, g := range c.Guests {
		if s, ok := c.guestSpec(g); ok {
			out = append(out, s)
		}
	}
	return out
}

func (c *Config) guestSpec(g Guest) (GuestSpec, bool) {
	i := slices.IndexFunc(c.Templates, func(t Template) bool { return t.Name == g.Template })
	if i < 0 {
		return GuestSpec{}, false
	}
	t := c.Templates[i]
	s := GuestSpec{Name: g.Name, Template: t.Name, Network: g.Network, Domain: g.Domain, Autostart: g.Autostart,
		CPUs: t.CPUs, Memory: t.Memory, Disk: t.Disk, Image: t.Image, Limits: t.Limits,
		MAC: g.MAC, Addresses: slices.Clone(g.Addresses)}
	if g.CPUs != nil {
		s.CPUs = *g.CPUs
	}
	if g.Memory != nil {
		s.Memory = *g.Memory
	}
	if g.Image != "" {
		s.Image = g.Image
	}
	if s.Domain == "" {
		if n := slices.IndexFunc(c.Networks, func(n Network) bool { return n.Name == g.Network }); n >= 0 {
			s.Domain = c.Networks[n].Domain
		}
	}
	if s.Limits.Memory == 0 {
		s.Limits.Memory = addSat(s.Memory, GuestOverhead)
	}
	if s.Limits.CPUWeight == 0 {
		s.Limits.CPUWeight = 100
	}
	if s.MAC == "" {
		s.MAC = GuestMAC(g.Name)
	}
	return s, true
}

// GuestMAC is the default MAC of guest name's NIC: QEMU's locally
// administered prefix 52:54:00 and the first three bytes of the name's
// SHA-256, so it stays the same across builds and hosts.
func GuestMAC(name string) string {
	h := sha256.Sum256([]byte("hardvisor guest " + name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}
