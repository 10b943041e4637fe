package qemutests

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/qemu-tests/testguest"
	"hardvisor.dev/hardvisor/services/vmm"
)

// attackerConfig is a debug host (its shell reads the uplink's counters)
// whose second NIC (…:57) is the uplink of a guest network, with a guest
// running on it; the test's attacker sits on that wire.
const attackerConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-attacker
profile: debug
resources:
  reserve: {memory: 512Mi, cpus: 1}
networks:
  - {name: lab, uplinks: [{mac: "52:54:00:12:34:57"}]}
templates:
  - {name: tiny, cpus: 1, memory: 16Mi, disk: 1Mi, limits: {memory: 200Mi}}
guests:
  - {name: omega, template: tiny, network: lab, autostart: true, image: omega.img}
`

// TestGuestSideScan attacks the host from its guest network: the uplink
// is a TAP device that, once QEMU holds it, moves into a network
// namespace of this machine (the attacker's side). From there nmap finds
// no host answering ARP on the subnet, a full TCP and UDP port scan of the
// management address and the subnet's broadcast address finds nothing
// open, and an all-nodes IPv6 ping gets no answer from the host; the
// uplink's receive counter shows the probes did arrive. A guest runs on
// the network throughout (its tap is a port of the bridge, libvirtd and
// vmm are up), and it still runs after the scans; then Ctrl-Alt-Del
// reboots the host, which powers the guest off by ACPI first.
func TestGuestSideScan(t *testing.T) {
	nmap := needTool(t, "nmap", "nmap")
	ip := needTool(t, "ip", "iproute2")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	const tap, ns = "hvatk0", "hvattacker"
	hostTap(t, tap)
	// A queue deep enough for the whole scan: under TCG the guest drains
	// the wire slower than nmap fills it, and a frame the TAP drops never
	// reaches the host, so its port would go unprobed.
	run(ip, "link", "set", "dev", tap, "txqueuelen", strconv.Itoa(probeQueue))
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
	run(ip, "netns", "add", ns)

	dir := buildConfig(t, "attacker", attackerConfig, guestImages(t, testguest.Guest{Name: "omega"}))
	vm := directBoot(t, dir, func(o *qemu.Options) {
		o.NICs = []qemu.NIC{{}, {TAP: tap}}
		o.Disks = []qemu.Disk{{Path: dataDisk(t)}}
		o.Memory, o.CPUs, o.CPU = 1536, 2, noVirtCPU
	})
	expect(t, vm, readyLine("0.1.0-attacker"), guestBootTimeout)
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	sh := &shell{t: t, vm: vm}
	r := report(t, sh)
	if r.Network == nil || len(r.Network.Bridges) != 1 {
		t.Fatalf("network in the report: %+v", r.Network)
	}
	bridge, uplink := strings.TrimSuffix(strings.Fields(r.Network.Bridges[0])[0], ":"), strings.Fields(r.Network.Bridges[0])[1]
	// The guest's port (its tap on the bridge) and what it printed: the
	// up line once per boot of the guest.
	guestTap := vmm.TapName("omega")
	guestPort := func() string {
		return sh.run("ls /sys/class/net/" + bridge + "/brif/; cat /var/lib/hardvisor/guests/omega/console.log")
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
		p := guestPort()
		if strings.Contains(p, guestTap) && strings.Contains(p, testguest.UpLine("omega")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest omega is not up on bridge %s a minute after the host was ready:\n%s", bridge, p)
		}
	}
	rxPackets := func() int {
		n, err := strconv.Atoi(strings.TrimSpace(sh.run("cat /sys/class/net/" + uplink + "/statistics/rx_packets")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rxPackets()
	// QEMU holds the TAP open; its other end now belongs to the attacker.
	run(ip, "link", "set", tap, "netns", ns)
	inNS := func(args ...string) string { return run(append([]string{ip, "netns", "exec", ns}, args...)...) }
	inNS(ip, "link", "set", "lo", "up")
	inNS(ip, "addr", "add", "10.0.2.99/24", "dev", tap)
	inNS(ip, "link", "set", tap, "up")

	// ARP: nothing on the subnet answers but the attacker itself.
	arp := inNS(nmap, "-sn", "-n", "-PR", "--max-retries", "2", "10.0.2.0/24")
	if m := regexp.MustCompile(`\((\d+) hosts? up\)`).FindStringSubmatch(arp); m == nil || m[1] != "1" {
		t.Errorf("ARP scan of 10.0.2.0/24 from the guest side: want only the attacker up\n%s", arp)
	}
	// Every port, TCP and UDP, of the address the host has on its
	// management side and of the broadcast address, sent straight to the
	// uplink's MAC (and to broadcast): nothing answers ARP, so the frames
	// are addressed by hand, and nmap must send them without asking.
	inNS(ip, "neigh", "add", "10.0.2.15", "lladdr", "52:54:00:12:34:57", "dev", tap, "nud", "permanent")
	inNS(ip, "neigh", "add", "10.0.2.255", "lladdr", "ff:ff:ff:ff:ff:ff", "dev", tap, "nud", "permanent")
	scan := inNS(nmap, "-Pn", "-n", "--disable-arp-ping", "--send-ip", "-sS", "-sU", "-p-", "--max-retries", "0", "--min-rate", "20000", "10.0.2.15", "10.0.2.255")
	if strings.Contains(scan, "/tcp open") || strings.Contains(scan, "/udp open ") || !strings.Contains(scan, "2 IP addresses (2 hosts up)") ||
		strings.Count(scan, "131070") != 2 {
		t.Errorf("port scan from the guest side found something open:\n%s", scan)
	}
	// IPv6: all-nodes multicast; only the attacker's own address answers.
	v6, _ := exec.Command(ip, "netns", "exec", ns, "ping", "-6", "-c", "3", "-w", "5", "ff02::1%"+tap).CombinedOutput()
	if n := strings.Count(string(v6), "bytes from"); n > 3 {
		t.Errorf("IPv6 all-nodes ping got %d answers, want only the attacker's own:\n%s", n, v6)
	}
	// The positive control: the host's uplink received every probe. The
	// guest may still be draining the TAP's queue when nmap is done.
	got := rxPackets() - before
	for deadline := time.Now().Add(30 * time.Second); got < 2*131070 && time.Now().Before(deadline); got = rxPackets() - before {
		time.Sleep(time.Second)
	}
	tapStats := inNS("sh", "-c", "cd /sys/class/net/"+tap+"/statistics && grep . tx_packets tx_dropped")
	if got < 2*131070 {
		t.Errorf("the uplink received %d packets during the scans, want at least the %d probes; the attacker's TAP:\n%s", got, 2*131070, tapStats)
	}
	t.Logf("ARP scan:\n%s\nport scan summary: %s\nthe uplink received %d packets; the attacker's TAP:\n%s", arp, lastLine(scan), got, tapStats)
	if p := guestPort(); !strings.Contains(p, guestTap) || strings.Count(p, testguest.UpLine("omega")) != 1 {
		t.Errorf("guest omega did not run through the scans on bridge %s (tap %s), or restarted:\n%s", bridge, guestTap, p)
	}
	if st := sh.run("hvstatus"); !strings.Contains(st, "gate: ready") {
		t.Errorf("host not ready after the scans:\n%s", st)
	}
	// A reboot (Ctrl-Alt-Del) powers the guest off by ACPI first.
	rebootDown(t, vm)
	con := vm.Console()
	if i, down := strings.Index(con, `msg="guest powered off" guest=omega`), strings.Index(con, "hardvisor: reboot: syncing disks"); i < 0 || i > down {
		t.Errorf("omega was not powered off by ACPI before the host went down for a reboot")
	}
}

// probeQueue is the attacker TAP's queue length: above the scan's
// 2×131070 probes.
const probeQueue = 300000

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return fmt.Sprint(lines[len(lines)-1])
}

// hostTap makes a TAP device on this machine for a VM's NIC, removed when
// the test ends (and first, when a killed run left it behind).
func hostTap(t *testing.T, name string) {
	t.Helper()
	ip := needTool(t, "ip", "iproute2")
	exec.Command(ip, "tuntap", "del", "dev", name, "mode", "tap").Run()
	if out, err := exec.Command(ip, "tuntap", "add", "dev", name, "mode", "tap").CombinedOutput(); err != nil {
		t.Fatalf("tap %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command(ip, "tuntap", "del", "dev", name, "mode", "tap").Run() })
}

// frameCapture records the frames a TAP device of this machine receives
// from QEMU: what the VM sends out of that NIC.
type frameCapture struct {
	mu     sync.Mutex
	frames [][]byte
}

// captureFrames brings TAP device name up, with no addresses of its own,
// and records what arrives on it until the test ends.
func captureFrames(t *testing.T, name string) *frameCapture {
	t.Helper()
	// No IPv6 of this machine's own on the wire: only the VM's frames.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(needTool(t, "ip", "iproute2"), "link", "set", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("tap %s up: %v\n%s", name, err, out)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	all := int(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, unix.ETH_P_ALL)))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, all)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(all), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		t.Fatalf("packet socket on %s: %v", name, err)
	}
	// The VM sends all through the test; a wakeup every 200 ms notices its end.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
	c := &frameCapture{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, slices.Clone(buf[:n]))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(stop); <-done; unix.Close(fd) })
	return c
}

// bySource counts the frames recorded so far by source MAC: all of them,
// and those of EtherType etherType (after any VLAN tag).
func (c *frameCapture) bySource(etherType uint16) (all, ofType map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all, ofType = map[string]int{}, map[string]int{}
	for _, f := range c.frames {
		if len(f) < 14 {
			continue
		}
		src := net.HardwareAddr(f[6:12]).String()
		all[src]++
		typ := binary.BigEndian.Uint16(f[12:])
		if typ == 0x8100 && len(f) >= 18 {
			typ = binary.BigEndian.Uint16(f[16:])
		}
		if typ == etherType {
			ofType[src]++
		}
	}
	return all, ofType
}
