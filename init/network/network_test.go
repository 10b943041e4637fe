package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/config"
)

func parse(t *testing.T, body string) *config.Config {
	t.Helper()
	c, err := config.Parse("hv.yaml", []byte("apiVersion: hardvisor.dev/v1\nversion: 1.0.0\n"+body))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	nicA = NIC{Name: "enp1s0", MAC: "52:54:00:aa:00:01", PCI: "0000:01:00.0"}
	nicB = NIC{Name: "enp2s0", MAC: "52:54:00:bb:00:01", PCI: "0000:02:00.0"}
	nicC = NIC{Name: "enp3s0", MAC: "52:54:00:bb:00:02", PCI: "0000:03:00.0"}
	nicD = NIC{Name: "eth9", MAC: "52:54:00:dd:00:01"}
)

func TestNewPlan(t *testing.T) {
	for _, tt := range []struct {
		name, config string
		nics         []NIC
		want         *Plan
		wantErr      string
	}{{
		name: "default: DHCP on the first NIC, the rest down",
		nics: []NIC{nicA, nicB, nicD},
		want: &Plan{Mgmt: &Mgmt{NIC: nicA, DHCP: true}, Down: []NIC{nicB, nicD}},
	}, {
		name: "static, bonded trunk with a tagged and an untagged network, first unused NIC manages",
		config: `management: {address: 192.0.2.11/24, gateway: 192.0.2.1, dns: [192.0.2.53]}
networks:
  - {name: prod, uplinks: [{mac: "52:54:00:aa:00:01"}, {mac: "52:54:00:bb:00:01"}], vlan: 100}
  - {name: lab, uplinks: [{mac: "52:54:00:bb:00:01"}, {mac: "52:54:00:aa:00:01"}]}
  - {name: dmz, uplinks: [{mac: "52:54:00:bb:00:02"}], vlan: 4094}
`,
		nics: []NIC{nicA, nicB, nicC, nicD},
		want: &Plan{
			Mgmt: &Mgmt{NIC: nicD, Address: netip.MustParsePrefix("192.0.2.11/24"), Gateway: netip.MustParseAddr("192.0.2.1"),
				DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}},
			Trunks: []Trunk{
				{Bridge: "hvbr0", Bond: "hvbond0", Uplinks: []NIC{nicA, nicB},
					Networks: []TrunkNetwork{{Name: "prod", VLAN: 100, VID: 100}, {Name: "lab", VLAN: 0, VID: 4094}}},
				{Bridge: "hvbr1", Uplinks: []NIC{nicC}, Networks: []TrunkNetwork{{Name: "dmz", VLAN: 4094, VID: 4094}}},
			},
		},
	}, {
		name:   "management NIC by MAC",
		config: "management: {nic: {mac: \"52:54:00:BB:00:02\"}}\n",
		nics:   []NIC{nicA, nicC},
		want:   &Plan{Mgmt: &Mgmt{NIC: nicC, DHCP: true}, Down: []NIC{nicA}},
	}, {
		name: "no NIC at all: nothing to manage",
		want: &Plan{},
	}, {
		name: "NICs the config names but the machine lacks",
		config: `management: {nic: {mac: "52:54:00:ee:00:01"}}
networks:
  - {name: prod, uplinks: [{mac: "52:54:00:ee:00:02"}]}
`,
		nics:    []NIC{nicA},
		wantErr: "network: networks[0].uplinks[0].mac: no NIC with MAC 52:54:00:ee:00:02 on this machine; management.nic.mac: no NIC with MAC 52:54:00:ee:00:01 on this machine",
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewPlan(parse(t, tt.config), tt.nics)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NewPlan =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestDiscover reads a fake /sys/class/net: Ethernet NICs with a device
// only, sorted by PCI address, virtio NICs by their PCI function.
func TestDiscover(t *testing.T) {
	root := t.TempDir()
	dev := func(path, subsystem string) string {
		d := filepath.Join(root, "devices", path)
		os.MkdirAll(d, 0o755)
		os.MkdirAll(filepath.Join(root, "bus", subsystem), 0o755)
		os.Symlink(filepath.Join(root, "bus", subsystem), filepath.Join(d, "subsystem"))
		return d
	}
	nic := func(name, typ, mac, device string) {
		d := filepath.Join(root, "class/net", name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "address"), []byte(mac+"\n"), 0o644)
		if device != "" {
			os.Symlink(device, filepath.Join(d, "device"))
		}
	}
	nic("enp2s0", "1", "52:54:00:BB:00:01", dev("pci0000:00/0000:02:00.0", "pci"))
	nic("eth0", "1", "52:54:00:aa:00:01", dev("pci0000:00/0000:01:00.0/virtio3", "virtio"))
	nic("lo", "772", "00:00:00:00:00:00", "")
	nic("hvbr0", "1", "52:54:00:cc:00:01", "")
	nic("wwan0", "519", "00:11:22:33:44:55", dev("usb1/1-1", "usb"))
	got, err := Discover(filepath.Join(root, "class/net"))
	if err != nil {
		t.Fatal(err)
	}
	want := []NIC{
		{Name: "eth0", MAC: "52:54:00:aa:00:01", PCI: "0000:01:00.0"},
		{Name: "enp2s0", MAC: "52:54:00:bb:00:01", PCI: "0000:02:00.0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Discover = %+v, want %+v", got, want)
	}
}

func TestWriteResolvConf(t *testing.T) {
	var b strings.Builder
	if err := WriteResolvConf(&b, []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}); err != nil {
		t.Fatal(err)
	}
	want := "# written by hardvisor PID 1 for the management namespace\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
	if b.String() != want {
		t.Errorf("resolv.conf = %q, want %q", b.String(), want)
	}
}
