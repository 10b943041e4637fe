package vmm

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables/expr"

	"hardvisor.dev/hardvisor/config"
)

const wantXML = `<domain type="qemu">
  <name>web</name>
  <uuid>325e1131-8bb3-5b35-9094-f8417c454929</uuid>
  <metadata><guest xmlns="https://hardvisor.dev/xmlns/vmm/1"><spec>d80962194a1c670d09fba5e5b07ac6bfc7d8f2d6e7223afdc53473bedd648aa1</spec></guest></metadata>
  <memory unit="KiB">65536</memory>
  <blkiotune>
    <device>
      <path>/dev/vda</path>
      <read_iops_sec>500</read_iops_sec>
      <write_iops_sec>500</write_iops_sec>
      <read_bytes_sec>20971520</read_bytes_sec>
      <write_bytes_sec>20971520</write_bytes_sec>
    </device>
  </blkiotune>
  <memtune>
    <hard_limit unit="KiB">327680</hard_limit>
  </memtune>
  <vcpu>2</vcpu>
  <cputune>
    <shares>300</shares>
    <global_period>100000</global_period>
    <global_quota>150000</global_quota>
  </cputune>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <boot dev="hd"></boot>
  </os>
  <features>
    <acpi></acpi>
  </features>
  <clock offset="utc"></clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw"></driver>
      <source file="/var/lib/hardvisor/guests/web/disk.img"></source>
      <target dev="vda" bus="virtio"></target>
    </disk>
    <controller type="usb" model="none"></controller>
    <interface type="bridge">
      <mac address="52:54:00:aa:bb:cc"></mac>
      <source bridge="hvbr0"></source>
      <target dev="hv-f714d5ff"></target>
      <model type="virtio"></model>
      <rom enabled="no"></rom>
    </interface>
    <serial type="file">
      <source path="/var/lib/hardvisor/guests/web/console.log" append="on"></source>
      <target port="0"></target>
    </serial>
    <video>
      <model type="none"></model>
    </video>
    <memballoon model="none"></memballoon>
  </devices>
</domain>`

func TestDomainXML(t *testing.T) {
	g := Guest{Spec: config.GuestSpec{Name: "web", CPUs: 2, Memory: 64 * config.Mi, Disk: 2 * config.Mi,
		Limits: config.Limits{CPU: 150, CPUWeight: 300, Memory: 320 * config.Mi, IOPS: 500, Bandwidth: 20 * config.Mi, PIDs: 128},
		MAC:    "52:54:00:AA:BB:CC"}, Bridge: "hvbr0", VID: 100}
	d, err := Domain(g, DomainOptions{DataDir: "/var/lib/hardvisor", IODevice: "/dev/vda"})
	if err != nil {
		t.Fatal(err)
	}
	x, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if x != wantXML {
		t.Errorf("domain XML:\n%s\nwant:\n%s", x, wantXML)
	}
	if md := OwnMetadata(d); md == nil || len(md.Spec) != 64 {
		t.Errorf("metadata: %+v", md)
	}
	// The same guest gives the same domain; another spec another hash.
	d2, _ := Domain(g, DomainOptions{DataDir: "/var/lib/hardvisor", IODevice: "/dev/vda"})
	g.Spec.CPUs = 1
	d3, _ := Domain(g, DomainOptions{DataDir: "/var/lib/hardvisor", IODevice: "/dev/vda"})
	if OwnMetadata(d2).Spec != OwnMetadata(d).Spec || OwnMetadata(d3).Spec == OwnMetadata(d).Spec {
		t.Error("spec hash is not a function of the domain")
	}
	if _, err := Domain(g, DomainOptions{}); err == nil || !strings.Contains(err.Error(), "block device") {
		t.Errorf("I/O ceilings without a device: %v", err)
	}
	if _, err := Domain(g, DomainOptions{Type: "xen", IODevice: "/dev/vda"}); err == nil {
		t.Error("domain type xen accepted")
	}
	if tap := TapName("web"); len(tap) > 15 || !strings.HasPrefix(tap, "hv-") || tap == TapName("web2") {
		t.Errorf("tap %q", tap)
	}
}

func TestWantCeilings(t *testing.T) {
	got := WantCeilings(config.Limits{CPU: 150, CPUWeight: 300, Memory: 320*config.Mi + 100, IOPS: 500, Bandwidth: 20 * config.Mi, PIDs: 128}, "254:0")
	want := Ceilings{CPUMax: "150000 100000", CPUWeight: "300", MemoryMax: "335544320",
		IOMax: "254:0 rbps=20971520 wbps=20971520 riops=500 wiops=500", PIDsMax: "128"}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	got = WantCeilings(config.Limits{CPUWeight: 100, IOPS: 10}, "8:0")
	want = Ceilings{CPUMax: "max 100000", CPUWeight: "100", MemoryMax: "max", IOMax: "8:0 rbps=max wbps=max riops=10 wiops=10", PIDsMax: "max"}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if d := (Ceilings{CPUMax: "max 100000"}).Diff(Ceilings{CPUMax: "50000 100000"}); len(d) != 1 || !strings.HasPrefix(d[0], "cpu.max") {
		t.Errorf("diff %v", d)
	}
}

func TestReadCeilings(t *testing.T) {
	dir := t.TempDir()
	for f, v := range map[string]string{"cpu.max": "50000 100000\n", "cpu.weight": "200\n", "memory.max": "max\n",
		"pids.max": "64\n", "io.max": "8:0 rbps=1 wbps=max riops=max wiops=max\n254:0 rbps=max wbps=max riops=100 wiops=100\n"} {
		os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644)
	}
	c, err := ReadCeilings(dir, "254:0")
	want := Ceilings{CPUMax: "50000 100000", CPUWeight: "200", MemoryMax: "max", IOMax: "254:0 rbps=max wbps=max riops=100 wiops=100", PIDsMax: "64"}
	if err != nil || c != want {
		t.Errorf("got %+v, %v", c, err)
	}
}

func TestParseDomainCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/machine/qemu-1-web.libvirt-qemu/emulator\n":         "/machine/qemu-1-web.libvirt-qemu",
		"12:pids:/\n0::/machine/qemu-3-a.b.libvirt-qemu/vcpu0\n": "/machine/qemu-3-a.b.libvirt-qemu",
		"0::/machine/qemu-1-web.libvirt-qemu\n":                  "/machine/qemu-1-web.libvirt-qemu",
	} {
		if got, err := ParseDomainCgroup(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"0::/\n", "4:memory:/x\n"} {
		if got, err := ParseDomainCgroup(strings.NewReader(in)); err == nil {
			t.Errorf("%q: %q, no error", in, got)
		}
	}
	ev, err := ParseMemoryEvents(strings.NewReader("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n"))
	if err != nil || ev["oom_kill"] != 1 || ev["max"] != 12 {
		t.Errorf("%v %v", ev, err)
	}
}

func TestWholeDisk(t *testing.T) {
	sys := t.TempDir()
	mk := func(dir string, files map[string]string) {
		os.MkdirAll(filepath.Join(sys, dir), 0o755)
		for f, v := range files {
			os.WriteFile(filepath.Join(sys, dir, f), []byte(v), 0o644)
		}
	}
	mk("devices/pci0000:00/0000:00:04.0/block/sda", map[string]string{"dev": "8:0\n", "uevent": "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"})
	mk("devices/pci0000:00/0000:00:04.0/block/sda/sda2", map[string]string{"dev": "8:2\n", "partition": "2\n", "uevent": "DEVNAME=sda2\n"})
	os.MkdirAll(filepath.Join(sys, "dev/block"), 0o755)
	os.Symlink("../../devices/pci0000:00/0000:00:04.0/block/sda", filepath.Join(sys, "dev/block/8:0"))
	os.Symlink("../../devices/pci0000:00/0000:00:04.0/block/sda/sda2", filepath.Join(sys, "dev/block/8:2"))
	for _, mm := range [][2]uint32{{8, 0}, {8, 2}} {
		got, err := WholeDisk(sys, mm[0], mm[1])
		if want := (BlockDevice{Path: "/dev/sda", Dev: "8:0"}); err != nil || got != want {
			t.Errorf("%v: %+v %v", mm, got, err)
		}
	}
	if _, err := WholeDisk(sys, 0, 45); err == nil {
		t.Error("overlay device: no error")
	}
}

func TestPrepareDisk(t *testing.T) {
	data := t.TempDir()
	img := filepath.Join(t.TempDir(), "x.img")
	sector := make([]byte, 4096)
	sector[510], sector[511] = 0x55, 0xaa
	os.WriteFile(img, sector, 0o644)

	s := config.GuestSpec{Name: "a", Disk: 1 * config.Mi, Image: "x.img"}
	if made, err := PrepareDisk(data, s, img); err != nil || !made {
		t.Fatalf("first: %v %v", made, err)
	}
	if st, _ := os.Stat(DiskPath(data, "a")); st.Size() != int64(config.Mi) {
		t.Errorf("size %d", st.Size())
	}
	if made, err := PrepareDisk(data, s, img); err != nil || made {
		t.Errorf("second: %v %v", made, err)
	}
	s.Disk = 2 * config.Mi
	if _, err := PrepareDisk(data, s, img); err != nil {
		t.Error(err)
	}
	if st, _ := os.Stat(DiskPath(data, "a")); st.Size() != int64(2*config.Mi) {
		t.Errorf("grown size %d", st.Size())
	}
	os.WriteFile(DiskPath(data, "a"), make([]byte, 4096), 0o644)
	if _, err := PrepareDisk(data, s, img); !errorsIs(err, ErrDiskBad) {
		t.Errorf("no boot signature: %v", err)
	}
	os.Remove(DiskPath(data, "a"))
	if _, err := PrepareDisk(data, s, img); !errorsIs(err, ErrDiskMissing) {
		t.Errorf("missing: %v", err)
	}
	// A blank disk is sparse and needs no image.
	b := config.GuestSpec{Name: "b", Disk: 64 * config.Mi}
	if made, err := PrepareDisk(data, b, ""); err != nil || !made {
		t.Errorf("blank: %v %v", made, err)
	}
	if made, err := PrepareDisk(data, config.GuestSpec{Name: "c"}, ""); err != nil || made {
		t.Errorf("no disk: %v %v", made, err)
	}
	if _, err := PrepareDisk(data, config.GuestSpec{Name: "d", Image: "y.img"}, filepath.Join(data, "nope.img")); err == nil {
		t.Error("missing image: no error")
	}
}

func TestPortRules(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:aa:bb:cc")
	r := PortRules(Port{Tap: "hv-1", MAC: mac})
	if len(r) != 3 {
		t.Fatalf("%d rules without addresses", len(r))
	}
	if c := r[0][1].(*expr.Cmp); c.Op != expr.CmpOpNeq || string(c.Data) != string(mac) {
		t.Errorf("rule 0: %+v", c)
	}
	r = PortRules(Port{Tap: "hv-1", MAC: mac, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}})
	// MAC, 802.1Q, 802.1ad, IPv4, ARP, IPv6, DAD, drop.
	if len(r) != 8 {
		t.Fatalf("%d rules", len(r))
	}
	arp := r[4]
	if c := arp[1].(*expr.Cmp); string(c.Data) != "\x08\x06" {
		t.Errorf("ARP ether type %x", c.Data)
	}
	if p := arp[4].(*expr.Payload); p.Base != expr.PayloadBaseNetworkHeader || p.Offset != 14 || p.Len != 4 {
		t.Errorf("ARP sender IP %+v", p)
	}
	if v := r[7][0].(*expr.Verdict); v.Kind != expr.VerdictDrop {
		t.Errorf("last rule %+v", v)
	}
}

func TestGuests(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`apiVersion: hardvisor.dev/v1
version: 1.0.0
networks:
  - name: prod
    uplinks: [{mac: "52:54:00:00:00:02"}]
    vlan: 100
  - name: lab
    uplinks: [{mac: "52:54:00:00:00:02"}]
  - name: dmz
    uplinks: [{mac: "52:54:00:00:00:03"}, {mac: "52:54:00:00:00:04"}]
templates:
  - {name: small, cpus: 1, memory: 64Mi, disk: 1Gi}
guests:
  - {name: a, template: small, network: prod}
  - {name: b, template: small, network: lab}
  - {name: c, template: small, network: dmz}
`))
	if err != nil {
		t.Fatal(err)
	}
	gs, err := Guests(c)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range gs {
		got = append(got, g.Spec.Name+" "+g.Bridge+" "+itoa(g.VID))
	}
	if want := []string{"a hvbr0 100", "b hvbr0 4094", "c hvbr1 4094"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestHandlerUnknown(t *testing.T) {
	m := &Manager{byName: map[string]*guest{}}
	srv := httptest.NewServer(Handler(m))
	defer srv.Close()
	for _, p := range []string{"/v1/guests/x", "/v1/guests/x/console", "/v2"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	resp, _ := http.Post(srv.URL+"/v1/guests", "", nil)
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST list: %d", resp.StatusCode)
	}
}

func errorsIs(err, target error) bool { return err != nil && errors.Is(err, target) }

func itoa(n int) string { return strconv.Itoa(n) }
