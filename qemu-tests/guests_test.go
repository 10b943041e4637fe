package qemutests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/cmd/hardvisor/cli"
	"hardvisor.dev/hardvisor/image/hypervisor"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/qemu-tests/testguest"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/vmm"
)

// guestsConfig is a debug host with the management API, a guest network
// on its second NIC and four tiny guests on it: alpha and beta start at
// boot, and alpha sends frames from its own MAC and from a forged one; gamma, which touches more memory than its ceiling allows, does not;
// delta's memory ceiling (700Mi) fits machine/ (about 950Mi in the test's
// VM) alone but not beside alpha's and beta's.
const guestsConfig = `apiVersion: hardvisor.dev/v1
version: 0.1.0-guests
profile: debug
resources:
  reserve: {memory: 512Mi, cpus: 1}
management:
%snetworks:
  - {name: lab, uplinks: [{mac: "52:54:00:12:34:57"}]}
templates:
  - name: tiny
    cpus: 1
    memory: 16Mi
    disk: 1Mi
    limits: {cpu: 50%%, cpuWeight: 200, memory: 200Mi, iops: 500, bandwidth: 10Mi, pids: 64}
  - name: hog
    cpus: 1
    memory: 192Mi
    disk: 1Mi
    limits: {memory: 192Mi}
  - name: big
    cpus: 1
    memory: 16Mi
    disk: 1Mi
    limits: {memory: 700Mi}
guests:
  - {name: alpha, template: tiny, network: lab, autostart: true, image: alpha.img, mac: "%s"}
  - {name: beta, template: tiny, network: lab, autostart: true, image: beta.img}
  - {name: gamma, template: hog, network: lab, image: gamma.img}
  - {name: delta, template: big, network: lab}
`

// noVirtCPU is TCG's default CPU without hardware virtualization: TCG's
// CPU offers SVM, so the host would find KVM usable and run its guests (and
// libvirt's probe of QEMU) on a KVM nested in TCG.
const noVirtCPU = "qemu64,-svm,-vmx"

// guestBootTimeout bounds a boot whose health gate waits for the autostart
// guests: libvirt probes QEMU once, and each nested TCG guest starts in
// tens of seconds.
const guestBootTimeout = 5 * time.Minute

// dataDisk makes a 256 MiB data disk for the test.
func dataDisk(t *testing.T) string {
	t.Helper()
	needTool(t, "mke2fs", "e2fsprogs")
	p := filepath.Join(t.TempDir(), "data.img")
	if err := qemu.DataDisk(p, 256<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// guestImages makes each test guest's disk image, named <name>.img, for
// buildConfig to put beside the config.
func guestImages(t *testing.T, guests ...testguest.Guest) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, g := range guests {
		img, err := g.Image()
		if err != nil {
			t.Fatal(err)
		}
		files[g.Name+".img"] = img
	}
	return files
}

// mcsRe takes the categories of a guest's label.
var mcsRe = regexp.MustCompile(`^system_u:system_r:svirt_tcg_t:s0:(c\d+,c\d+)$`)

// TestGuests boots a host with guests and checks, from this machine
// through the management API and `hardvisor ctl`, and inside through the
// debug shell: the autostart guests run and print their marker; the frames
// alpha sends from its own MAC leave the host's uplink and those from a
// forged MAC do not; each runs as svirt_tcg_t with its own MCS category pair; a process in alpha's
// label reads alpha's disk and is refused beta's by SELinux in enforcing
// mode; the guests' cgroups carry their template's ceilings; a guest that
// touches more memory than its ceiling is killed alone while the others
// and the host stay up; at poweroff the guests are shut down by ACPI
// before the host stops.
func TestGuests(t *testing.T) {
	dir := t.TempDir()
	p := newAPIPKI(t, dir)
	admin, viewer := p.issue(t, "alice", pki.RoleAdmin), p.issue(t, "victor", pki.RoleViewer)
	const hogMiB = 186 // of its 192Mi: with QEMU's own memory, beyond the 192Mi ceiling
	const alphaMAC, frames = "52:54:00:a1:00:01", 20
	out := buildConfig(t, "guests", fmt.Sprintf(guestsConfig, p.apiConfig(), alphaMAC), guestImages(t,
		testguest.Guest{Name: "alpha", Mode: testguest.ModeSpoof, Frames: frames}, testguest.Guest{Name: "beta"},
		testguest.Guest{Name: "gamma", Mode: testguest.ModeHog, HogMiB: hogMiB}))
	// The guest network's uplink is a TAP of this machine: what leaves
	// the host on that wire is recorded from before the host boots.
	const uplink = "hvlab0"
	hostTap(t, uplink)
	wire := captureFrames(t, uplink)
	vm := directBoot(t, out, func(o *qemu.Options) {
		o.NICs = []qemu.NIC{{HostFwd: []string{"tcp:127.0.0.1:0-:8443"}}, {TAP: uplink}}
		o.Disks = []qemu.Disk{{Path: dataDisk(t)}}
		o.Memory, o.CPUs, o.CPU = 1536, 2, noVirtCPU
		o.ExtraArgs = []string{"-device", "virtio-rng-pci"}
	})
	start := time.Now()
	expect(t, vm, readyLine("0.1.0-guests"), guestBootTimeout)
	t.Logf("ready with 2 guests after %.1fs", time.Since(start).Seconds())
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on /dev/ttyS0`), bootTimeout)
	sh := &shell{t: t, vm: vm}
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", vm.HostPort(8443))
	call := p.caller(t, endpoint)
	guests := func() map[string]vmm.Status {
		t.Helper()
		code, body, err := call(&viewer, "GET", "/v1/guests", "")
		var l vmm.ListReply
		if err != nil || code != 200 || json.Unmarshal(body, &l) != nil {
			t.Fatalf("GET /v1/guests: %d %v\n%s", code, err, body)
		}
		m := map[string]vmm.Status{}
		for _, g := range l.Guests {
			m[g.Name] = g
		}
		return m
	}

	// Running, labeled apart, with their ceilings in place.
	gs := guests()
	cats := map[string]string{}
	for _, name := range []string{"alpha", "beta"} {
		g := gs[name]
		m := mcsRe.FindStringSubmatch(g.Label)
		if g.State != "running" || m == nil || g.Error != "" {
			t.Fatalf("%s: state %q label %q error %q, want running as svirt_tcg_t with two categories", name, g.State, g.Label, g.Error)
		}
		cats[name] = m[1]
		// The attribute ends in a NUL and no newline.
		if label := strings.Trim(sh.run(fmt.Sprintf("cat /proc/%d/attr/current; echo", g.PID)), "\x00 \n"); label != g.Label {
			t.Errorf("%s: QEMU (pid %d) runs as %q, vmm says %q", name, g.PID, label, g.Label)
		}
		if g.Ceilings == nil || *g.Ceilings != g.Want {
			t.Errorf("%s: ceilings read back %+v, want %+v", name, g.Ceilings, g.Want)
		}
		if !strings.HasPrefix(g.Cgroup, "/machine/") {
			t.Errorf("%s: cgroup %q, want one under machine/", name, g.Cgroup)
		}
		cg := "/sys/fs/cgroup" + g.Cgroup + "/"
		for file, want := range map[string]string{
			"cpu.max": "50000 100000", "cpu.weight": "200", "memory.max": strconv.Itoa(200 << 20), "pids.max": "64",
		} {
			if got := strings.TrimSpace(sh.run("cat " + cg + file)); got != want {
				t.Errorf("%s: %s = %q, want %q", name, file, got, want)
			}
		}
		if io := sh.run("cat " + cg + "io.max"); !strings.Contains(io, "rbps=10485760 wbps=10485760 riops=500 wiops=500") {
			t.Errorf("%s: io.max = %q, want 10Mi bytes and 500 operations per second each way", name, io)
		}
	}
	if cats["alpha"] == cats["beta"] {
		t.Errorf("alpha and beta share MCS categories %s", cats["alpha"])
	}

	// The guests booted: their markers are in their console logs.
	for _, name := range []string{"alpha", "beta"} {
		waitConsole(t, call, &viewer, name, testguest.UpLine(name))
	}

	// Anti-spoofing: alpha sent each frame twice, from its MAC and from
	// a forged one. Its tap got both; the uplink's wire only the first.
	waitConsole(t, call, &viewer, "alpha", testguest.SentLine("alpha", frames))
	forged := net.HardwareAddr(testguest.ForgedMAC[:]).String()
	all, own := wire.bySource(testguest.FrameType)
	for deadline := time.Now().Add(30 * time.Second); own[alphaMAC] < frames && time.Now().Before(deadline); all, own = wire.bySource(testguest.FrameType) {
		time.Sleep(time.Second)
	}
	if own[alphaMAC] != frames || all[forged] != 0 || len(own) != 1 {
		t.Errorf("frames on the uplink's wire by source MAC: %v (of type %#x: %v); want %d from alpha (%s) and none from %s",
			all, testguest.FrameType, own, frames, alphaMAC, forged)
	}
	if rx, err := strconv.Atoi(strings.TrimSpace(sh.run("cat /sys/class/net/" + gs["alpha"].Tap + "/statistics/rx_packets"))); err != nil || rx < 2*frames {
		t.Errorf("alpha's tap %s received %d packets (%v), want the %d frames alpha sent", gs["alpha"].Tap, rx, err, 2*frames)
	}
	t.Logf("frames on the uplink's wire by source MAC: %v", all)

	// sVirt: a process as QEMU is (libvirt-qemu, alpha's label) opens
	// alpha's disk; beta's, which the same user owns, SELinux refuses.
	alphaLabel := gs["alpha"].Label
	readDisk := func(name string) string {
		return sh.run(fmt.Sprintf("runcon -u %d:%d %s /bbin/dd if=/var/lib/hardvisor/guests/%s/disk.img of=/dev/null bs=512 count=1 2>&1 | cat; echo rc=$?",
			hypervisor.QEMUUID, hypervisor.QEMUPrimaryGID, alphaLabel, name))
	}
	if got := readDisk("alpha"); !strings.Contains(got, "512 bytes") || strings.Contains(got, "denied") {
		t.Errorf("alpha's label reading alpha's disk: %s\n%s", got, sh.run("dmesg | grep avc: | grep dd"))
	}
	// The pipe's status is cat's: dd's own error tells why it failed.
	if got := readDisk("beta"); !strings.Contains(got, "beta/disk.img: permission denied") {
		t.Errorf("alpha's label reading beta's disk: %s, want EACCES\n%s", got, sh.run("dmesg | grep avc: | grep dd"))
	}
	if mode := strings.TrimSpace(sh.run("cat /sys/fs/selinux/enforce; echo")); mode != "1" {
		t.Errorf("SELinux enforce = %q, want 1", mode)
	}
	// That refusal is the only one: the policy denied libvirtd, QEMU and
	// vmm nothing while they defined, labeled and started the guests.
	if avc := sh.run(`dmesg | grep "avc:  denied" | grep -v "comm=\"dd\""`); strings.TrimSpace(avc) != "" {
		t.Errorf("SELinux denials besides dd's read of beta's disk:\n%s", avc)
	}

	// hardvisor ctl lists them.
	ctl := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		credsDir := t.TempDir()
		certFile, keyFile := filepath.Join(credsDir, "c.pem"), filepath.Join(credsDir, "k.pem")
		for f, b := range map[string][]byte{certFile: admin.cert, keyFile: admin.key} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		base := []string{"ctl", "--endpoint", endpoint, "--cert", certFile, "--key", keyFile, "--ca", p.caFile}
		if err := cli.Execute(context.Background(), append(base, args...), &stdout, &stderr); err != nil {
			t.Fatalf("hardvisor ctl %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}
	table := ctl("guests")
	t.Logf("hardvisor ctl guests:\n%s", table)
	for _, name := range []string{"alpha", "beta"} {
		if !regexp.MustCompile(`(?m)^`+name+`\s+running`).MatchString(table) || !strings.Contains(table, cats[name]) {
			t.Errorf("ctl guests shows %s not running as %s:\n%s", name, cats[name], table)
		}
	}

	// A guest beyond its memory ceiling dies alone.
	if code, body, err := call(&viewer, "POST", "/v1/guests/gamma/start", ""); err != nil || code != 403 {
		t.Errorf("viewer starts gamma: %d %v %s, want 403", code, err, body)
	}
	if code, body, err := call(&admin, "POST", "/v1/guests/gamma/start", ""); err != nil || code != 202 {
		t.Fatalf("admin starts gamma: %d %v %s", code, err, body)
	}
	expect(t, vm, regexp.MustCompile(`msg="guest (crashed; restarting after backoff|stopped)" guest=gamma .*OOM killer`), 5*time.Minute)
	if code, body, err := call(&admin, "POST", "/v1/guests/gamma/stop", ""); err != nil || code != 202 {
		t.Errorf("admin stops gamma: %d %v %s", code, err, body)
	}
	if st := sh.run("hvstatus"); !strings.Contains(st, "gate: ready") {
		t.Errorf("host not ready after gamma's OOM:\n%s", st)
	}
	if a := guests()["alpha"]; a.State != "running" || a.PID != gs["alpha"].PID {
		t.Errorf("alpha after gamma's OOM: %s pid %d, want still running as pid %d", a.State, a.PID, gs["alpha"].PID)
	}

	// The runtime budget: delta's ceiling does not fit beside the running
	// guests', so vmm refuses to start it (409), and says why.
	budgetRe := regexp.MustCompile(`guest delta does not fit in the host's memory budget: its ceiling is 700Mi, running guests hold (400|592)Mi of the \d+(\.\d)?Mi that machine/ allows`)
	if code, body, err := call(&admin, "POST", "/v1/guests/delta/start", ""); err != nil || code != 409 || !budgetRe.Match(body) {
		t.Fatalf("admin starts delta: %d %v %s, want 409 with the budget's numbers", code, err, body)
	}
	expect(t, vm, regexp.MustCompile(`msg="guest cannot start" guest=delta err="`+budgetRe.String()), time.Minute)
	if d := guests()["delta"]; !d.Failed || !strings.Contains(d.Error, "does not fit in the host's memory budget") || d.PID != 0 {
		t.Errorf("delta after the refusal: failed %v, pid %d, error %q; want failed with the budget's reason", d.Failed, d.PID, d.Error)
	}

	// A corrupt disk, then a missing one: gamma fails alone, with the
	// reason in its status, and alpha keeps running.
	for deadline := time.Now().Add(time.Minute); guests()["gamma"].State != "shutoff"; time.Sleep(2 * time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("gamma is %q a minute after its stop, want shutoff", guests()["gamma"].State)
		}
	}
	gammaDisk := "/var/lib/hardvisor/guests/gamma/disk.img"
	for _, c := range []struct{ damage, reason string }{
		{"echo corrupt > " + gammaDisk, "disk unusable: " + gammaDisk + ": size 8 is not a whole number of sectors"},
		{"rm " + gammaDisk, "disk missing: " + gammaDisk + " was made before and is gone"},
	} {
		sh.run(c.damage + "; echo damaged")
		// vmm failed the start: 502, with its reason.
		if code, body, err := call(&admin, "POST", "/v1/guests/gamma/start", ""); err != nil || code != 502 || !strings.Contains(string(body), c.reason) {
			t.Fatalf("admin starts gamma after %q: %d %v %s, want 502 with %q", c.damage, code, err, body, c.reason)
		}
		expect(t, vm, regexp.MustCompile(`msg="guest cannot start" guest=gamma err="guest gamma: `+regexp.QuoteMeta(c.reason)), time.Minute)
		if g := guests()["gamma"]; !g.Failed || !strings.Contains(g.Error, c.reason) || g.PID != 0 {
			t.Errorf("gamma after %q: failed %v, pid %d, error %q; want failed with %q", c.damage, g.Failed, g.PID, g.Error, c.reason)
		}
	}
	if a := guests()["alpha"]; a.State != "running" || a.PID != gs["alpha"].PID {
		t.Errorf("alpha after gamma's bad disks: %s pid %d, want still running as pid %d", a.State, a.PID, gs["alpha"].PID)
	}

	// Poweroff: vmm powers both guests off by ACPI before the host stops.
	powerDown(t, vm)
	con := vm.Console()
	stopped := strings.Index(con, "hardvisor: poweroff: syncing disks")
	for _, name := range []string{"alpha", "beta"} {
		i := strings.Index(con, `msg="guest powered off" guest=`+name)
		if i < 0 || i > stopped {
			t.Errorf("%s was not powered off by ACPI before the host stopped", name)
		}
	}
}

// waitConsole waits for line in guest name's console log, read through
// the API.
func waitConsole(t *testing.T, call func(*credentials, string, string, string) (int, []byte, error), who *credentials, name, line string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body, err := call(who, "GET", "/v1/guests/"+name+"/console", "")
		var c struct {
			Console string `json:"console"`
		}
		if err == nil && code == 200 && json.Unmarshal(body, &c) == nil && strings.Contains(c.Console, line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's console lacks %q: %d %v\n%s", name, line, code, err, body)
		}
		time.Sleep(2 * time.Second)
	}
}
