package qemu

import (
	"strings"
	"testing"
)

func TestParseHostFwd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want hostFwd
	}{
		{"tcp:127.0.0.1:0-:8443", hostFwd{proto: "tcp", hostAddr: "127.0.0.1", hostPort: 0, guestPort: 8443}},
		{"tcp::2222-:22", hostFwd{proto: "tcp", hostPort: 2222, guestPort: 22}},
		{":127.0.0.1:80-10.0.2.15:8080", hostFwd{proto: "tcp", hostAddr: "127.0.0.1", hostPort: 80, guestAddr: "10.0.2.15", guestPort: 8080}},
		{"udp::0-53", hostFwd{proto: "udp", hostPort: 0, guestPort: 53}},
	} {
		got, err := parseHostFwd(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseHostFwd(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "tcp", "tcp:1-:2", "tcp::1", "tcp:host:1-:2", "tcp::70000-:2", "tcp::1-:"} {
		if f, err := parseHostFwd(in); err == nil {
			t.Errorf("parseHostFwd(%q) = %+v, want error", in, f)
		}
	}
}

func TestResolveHostPorts(t *testing.T) {
	opts := Options{NICs: []NIC{
		{HostFwd: []string{"tcp:127.0.0.1:0-:8443", "tcp::2222-:22"}},
		{TAP: "tap0"},
		{HostFwd: []string{"tcp:127.0.0.1:0-:9100", "tcp:127.0.0.1:0-:8443"}},
	}}
	got, ports, err := resolveHostPorts(opts)
	if err != nil {
		t.Fatal(err)
	}
	if opts.NICs[0].HostFwd[0] != "tcp:127.0.0.1:0-:8443" {
		t.Errorf("resolveHostPorts modified its input: %q", opts.NICs[0].HostFwd)
	}
	if len(ports) != 3 || ports[22] != 2222 || ports[8443] == 0 || ports[9100] == 0 || ports[8443] == ports[9100] {
		t.Errorf("ports = %v, want 22:2222 and distinct free ports for 8443 and 9100", ports)
	}
	for i, n := range got.NICs {
		for _, f := range n.HostFwd {
			if strings.Contains(f, ":0-") {
				t.Errorf("nics[%d] forward %q still has host port 0", i, f)
			}
		}
	}
	if got.NICs[1].TAP != "tap0" || len(got.NICs[2].HostFwd) != 2 {
		t.Errorf("NICs changed beyond their forwards: %+v", got.NICs)
	}
}
