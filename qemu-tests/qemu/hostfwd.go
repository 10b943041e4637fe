package qemu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// hostFwd is one user-net forward rule,
// [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport.
type hostFwd struct {
	proto     string
	hostAddr  string
	hostPort  int
	guestAddr string
	guestPort int
}

func (f hostFwd) String() string {
	return fmt.Sprintf("%s:%s:%d-%s:%d", f.proto, f.hostAddr, f.hostPort, f.guestAddr, f.guestPort)
}

func parseHostFwd(s string) (hostFwd, error) {
	proto, rest, ok := strings.Cut(s, ":")
	if !ok {
		return hostFwd{}, fmt.Errorf("%q: want [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport", s)
	}
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return hostFwd{}, fmt.Errorf("%q: protocol %q is not tcp or udp", s, proto)
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return hostFwd{}, fmt.Errorf("%q: want hostport-[guestaddr]:guestport", s)
	}
	f := hostFwd{proto: proto}
	var err error
	if f.hostAddr, f.hostPort, err = splitAddrPort(host, true); err != nil {
		return hostFwd{}, fmt.Errorf("%q: host side: %w", s, err)
	}
	if f.guestAddr, f.guestPort, err = splitAddrPort(guest, false); err != nil {
		return hostFwd{}, fmt.Errorf("%q: guest side: %w", s, err)
	}
	return f, nil
}

// splitAddrPort splits "[addr]:port"; a missing "addr:" is allowed on the
// guest side ("-8443" and "-:8443" both mean the guest's address).
func splitAddrPort(s string, host bool) (string, int, error) {
	addr, port := "", s
	if i := strings.LastIndex(s, ":"); i >= 0 {
		addr, port = s[:i], s[i+1:]
	} else if host {
		return "", 0, fmt.Errorf("%q: want [addr]:port", s)
	}
	if addr != "" && net.ParseIP(addr) == nil {
		return "", 0, fmt.Errorf("%q is not an IP address", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !host) {
		return "", 0, fmt.Errorf("port %q is not a port number", port)
	}
	return addr, n, nil
}

// resolveHostPorts replaces every host port 0 in opts' forwards with a free
// port and returns the new options and the guest-port to host-port map.
// The ports are found by binding them and released just before QEMU binds
// them again; another process could take one in between, which QEMU then
// reports as "Could not set up host forwarding rule".
func resolveHostPorts(opts Options) (Options, map[int]int, error) {
	ports := map[int]int{}
	var holds []io.Closer
	defer func() {
		for _, h := range holds {
			h.Close()
		}
	}()
	nics := make([]NIC, len(opts.NICs))
	for i, n := range opts.NICs {
		fwds := make([]string, len(n.HostFwd))
		for j, s := range n.HostFwd {
			f, err := parseHostFwd(s)
			if err != nil {
				return Options{}, nil, fmt.Errorf("nics[%d].hostFwd[%d]: %w", i, j, err)
			}
			if f.hostPort == 0 {
				port, hold, err := freePort(f.proto, f.hostAddr)
				if err != nil {
					return Options{}, nil, fmt.Errorf("nics[%d].hostFwd[%d]: %w", i, j, err)
				}
				holds = append(holds, hold)
				f.hostPort = port
			}
			if _, dup := ports[f.guestPort]; !dup {
				ports[f.guestPort] = f.hostPort
			}
			fwds[j] = f.String()
		}
		n.HostFwd = fwds
		nics[i] = n
	}
	opts.NICs = nics
	return opts, ports, nil
}

// freePort binds proto on addr:0 and returns the port with the socket that
// holds it, so forwards of one VM never get the same port.
func freePort(proto, addr string) (int, io.Closer, error) {
	if addr == "" {
		addr = "0.0.0.0" // what QEMU binds when hostaddr is empty
	}
	hp := net.JoinHostPort(addr, "0")
	switch proto {
	case "udp":
		c, err := net.ListenPacket("udp", hp)
		if err != nil {
			return 0, nil, fmt.Errorf("find a free udp port on %s: %w", addr, err)
		}
		return c.LocalAddr().(*net.UDPAddr).Port, c, nil
	case "tcp":
		l, err := net.Listen("tcp", hp)
		if err != nil {
			return 0, nil, fmt.Errorf("find a free tcp port on %s: %w", addr, err)
		}
		return l.Addr().(*net.TCPAddr).Port, l, nil
	}
	return 0, nil, errors.New("unknown protocol " + proto)
}
