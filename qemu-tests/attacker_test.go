package qemutests

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// attackerConfig is a debug host (its shell reads the uplink's counters)
// whose second NIC (…:57) is the uplink of a guest network; the test's
// attacker sits on that wire.
const attackerConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-attacker
profile: debug
networks:
  - {name: lab, uplinks: [{mac: "52:54:00:12:34:57"}]}
`

// TestGuestSideScan attacks the host from its guest network: the uplink
// is a TAP device that, once QEMU holds it, moves into a network
// namespace of this machine (the attacker's side). From there nmap finds
// no host answering ARP on the subnet, a full TCP and UDP port scan of the
// management address and the subnet's broadcast address finds nothing
// open, and an all-nodes IPv6 ping gets no answer from the host; the
// uplink's receive counter shows the probes did arrive.
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
	run(ip, "tuntap", "add", "dev", tap, "mode", "tap")
	// A queue deep enough for the whole scan: under TCG the guest drains
	// the wire slower than nmap fills it, and a frame the TAP drops never
	// reaches the host, so its port would go unprobed.
	run(ip, "link", "set", "dev", tap, "txqueuelen", strconv.Itoa(probeQueue))
	t.Cleanup(func() {
		exec.Command(ip, "netns", "del", ns).Run()
		exec.Command(ip, "tuntap", "del", "dev", tap, "mode", "tap").Run()
	})
	run(ip, "netns", "add", ns)

	dir := buildConfig(t, "attacker", attackerConfig)
	vm := directBoot(t, dir, func(o *qemu.Options) { o.NICs = []qemu.NIC{{}, {TAP: tap}} })
	expect(t, vm, readyLine("0.1.0-attacker"), bootTimeout)
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	sh := &shell{t: t, vm: vm}
	r := report(t, sh)
	if r.Network == nil || len(r.Network.Bridges) != 1 {
		t.Fatalf("network in the report: %+v", r.Network)
	}
	uplink := strings.Fields(r.Network.Bridges[0])[1]
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
	powerDown(t, vm)
}

// probeQueue is the attacker TAP's queue length: above the scan's
// 2×131070 probes.
const probeQueue = 300000

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return fmt.Sprint(lines[len(lines)-1])
}
