package vmm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/qemu-tests/testguest"
)

// libvirtd is a real libvirtd in private mount and network namespaces:
// overlays on /etc and /var (writes land in the test's directory), a tmpfs
// on /run, and a bridge hvbr0 in its own network namespace.
type libvirtd struct {
	dir, sock, netns string
	cmd              *exec.Cmd
	log              *os.File
}

func startLibvirtd(t *testing.T) *libvirtd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/usr/sbin/libvirtd"); err != nil {
		t.Skip("no /usr/sbin/libvirtd")
	}
	for _, p := range []string{"unshare", "ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s", p)
		}
	}
	dir := t.TempDir()
	d := &libvirtd{dir: dir, sock: filepath.Join(dir, "sock", "libvirt-sock")}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("libvirtd.conf", fmt.Sprintf(`listen_tls = 0
listen_tcp = 0
unix_sock_dir = %q
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:stderr"
`, filepath.Dir(d.sock)))
	// No SELinux on the build host; QEMU runs as root here.
	write("qemu.conf", `stdio_handler = "file"
security_driver = "none"
user = "root"
group = "root"
remember_owner = 0
`)
	script := fmt.Sprintf(`set -e
D=%q
mkdir -p $D/etc-up $D/etc-work $D/var-up $D/var-work $D/sock
mount -t overlay overlay -o lowerdir=/etc,upperdir=$D/etc-up,workdir=$D/etc-work /etc
mount -t overlay overlay -o lowerdir=/var,upperdir=$D/var-up,workdir=$D/var-work /var
mount -t tmpfs tmpfs /run
mkdir -p /etc/libvirt /run/libvirt
# libvirt resolves its built-in default user before it reads qemu.conf.
grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >> /etc/group
grep -q '^libvirt-qemu:' /etc/passwd || echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> /etc/passwd
cp $D/qemu.conf $D/libvirtd.conf /etc/libvirt/
ip link set lo up
ip link add hvbr0 type bridge
ip link set hvbr0 up
exec /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf
`, dir)
	log, err := os.Create(filepath.Join(dir, "libvirtd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.log = log
	d.cmd = exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.netns = fmt.Sprintf("/proc/%d/ns/net", d.cmd.Process.Pid)
	// libvirt makes machine/ in the host's cgroup hierarchies; remove the
	// ones it made, once empty.
	before, _ := filepath.Glob("/sys/fs/cgroup/*/machine")
	t.Cleanup(func() {
		after, _ := filepath.Glob("/sys/fs/cgroup/*/machine")
		for _, p := range after {
			if !slices.Contains(before, p) {
				os.Remove(p)
			}
		}
	})
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("libvirtd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || d.cmd.ProcessState != nil {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("libvirtd did not come up:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

// hostHasCgroup2Controllers says whether the cgroup2 mount has the
// controllers the ceilings need; the build host may be cgroup v1.
func hostHasCgroup2Controllers() bool {
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return slices.Contains(f, "cpu") && slices.Contains(f, "memory") && slices.Contains(f, "io") && slices.Contains(f, "pids")
}

// vlanFiltering says whether this kernel's bridges filter VLANs.
func vlanFiltering(t *testing.T, netns string) bool {
	out, err := exec.Command("nsenter", "--net="+netns, "ip", "link", "add", "hvvlantest", "type", "bridge", "vlan_filtering", "1").CombinedOutput()
	if err != nil {
		t.Logf("no VLAN filtering on this kernel's bridges (%s): taps are plugged without VLANs", bytes.TrimSpace(out))
		return false
	}
	exec.Command("nsenter", "--net="+netns, "ip", "link", "del", "hvvlantest").Run()
	return true
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// canRaiseRlimits says whether this process may raise a hard rlimit
// (CAP_SYS_RESOURCE): libvirt sets QEMU's RLIMIT_MEMLOCK to memtune's
// hard_limit, and fails the start without it.
func canRaiseRlimits() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			var caps uint64
			fmt.Sscanf(strings.TrimSpace(v), "%x", &caps)
			return caps&(1<<24) != 0
		}
	}
	return false
}

var memTune = canRaiseRlimits()

func spec(name string, autostart bool, limits config.Limits) config.GuestSpec {
	if limits.CPUWeight == 0 {
		limits.CPUWeight = 100
	}
	if limits.Memory == 0 {
		limits.Memory = 32*config.Mi + config.GuestOverhead
	}
	if !memTune {
		limits.Memory = 0
	}
	return config.GuestSpec{Name: name, Network: "lan", Autostart: autostart, CPUs: 1, Memory: 32 * config.Mi,
		Disk: 2 * config.Mi, Image: name + ".img", Limits: limits, MAC: config.GuestMAC(name)}
}

func waitConsole(t *testing.T, path, line string, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(line+"\r\n")) {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			t.Fatalf("no %q in %s after %v; it has %q", line, path, within, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLibvirt runs guests through a real libvirtd under TCG.
func TestLibvirt(t *testing.T) {
	lvd := startLibvirtd(t)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	data := filepath.Join(dir, "data")
	os.MkdirAll(images, 0o755)
	for _, g := range []testguest.Guest{{Name: "alpha"}, {Name: "beta"}, {Name: "gamma"}, {Name: "delta"},
		{Name: "hog", Mode: testguest.ModeHog, HogMiB: 120}} {
		if err := g.WriteFile(filepath.Join(images, g.Name+".img")); err != nil {
			t.Fatal(err)
		}
	}
	if !memTune {
		t.Log("no CAP_SYS_RESOURCE here (libvirt cannot raise QEMU's RLIMIT_MEMLOCK to memtune's hard_limit): " +
			"test guests run without a memory ceiling, and the OOM case is skipped")
	}
	cg2 := hostHasCgroup2Controllers()
	if !cg2 {
		t.Log("the host's cgroup2 mount has no cpu/memory/io/pids controllers (cgroup v1 host): " +
			"checking the ceilings through libvirt and the v1 files instead of the v2 read-back")
	}
	alphaLimits := config.Limits{CPU: 50, CPUWeight: 200, Memory: 300 * config.Mi, IOPS: 100, Bandwidth: 10 * config.Mi, PIDs: 64}
	guests := []Guest{
		{Spec: spec("alpha", true, alphaLimits), Bridge: "hvbr0", VID: 10},
		{Spec: spec("beta", true, config.Limits{}), Bridge: "hvbr0", VID: 10},
		{Spec: spec("gamma", true, config.Limits{}), Bridge: "hvbr0", VID: 10},
		{Spec: spec("delta", false, config.Limits{}), Bridge: "hvbr0", VID: 10},
	}
	guests[0].Spec.Addresses = []string{"10.0.0.5", "fd00::5"}
	// gamma had a disk before, which is gone.
	os.MkdirAll(GuestDir(data, "gamma"), 0o755)
	os.WriteFile(filepath.Join(GuestDir(data, "gamma"), createdMarker), nil, 0o644)

	opts := Options{
		Socket: lvd.sock, DataDir: data, ImagePath: func(n string) string { return filepath.Join(images, n+".img") },
		SkipCeilings: !cg2, NetNS: lvd.netns, NoVLAN: !vlanFiltering(t, lvd.netns),
		ShutdownTimeout: 10 * time.Second, CheckInterval: time.Second, RestartBackoff: 500 * time.Millisecond, MaxRestarts: 1,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	}
	m, err := New(guests, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := m.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	lv, _ := m.conn()

	t0 := time.Now()
	actions, err := m.Reconcile(ctx)
	t.Logf("first reconcile took %v: %v", time.Since(t0).Round(time.Millisecond), actions)
	if err == nil || !errors.Is(err, ErrDiskMissing) || strings.Contains(err.Error(), "alpha") || strings.Contains(err.Error(), "beta") {
		t.Errorf("reconcile error = %v, want gamma's missing disk only", err)
	}
	want := []Action{{"alpha", "defined"}, {"beta", "defined"}, {"gamma", "defined"}, {"delta", "defined"},
		{"alpha", "started"}, {"beta", "started"}, {"gamma", "failed"}}
	if !slices.Equal(actions, want) {
		t.Errorf("actions = %v, want %v", actions, want)
	}
	for _, n := range []string{"alpha", "beta"} {
		d := waitConsole(t, ConsolePath(data, n), testguest.UpLine(n), 30*time.Second)
		t.Logf("%s: marker %v after its start (%v after reconcile began)", n, d.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	}
	st, _ := m.Get("gamma")
	if !st.Failed || !strings.Contains(st.Error, "disk missing") {
		t.Errorf("gamma: %+v", st)
	}

	t.Run("ceilings", func(t *testing.T) {
		st, _ := m.Get("alpha")
		if st.State != "running" || st.PID == 0 {
			t.Fatalf("alpha: %+v", st)
		}
		if cg2 {
			if st.Ceilings == nil || len(st.Ceilings.Diff(st.Want)) > 0 || st.Error != "" {
				t.Errorf("alpha ceilings %+v, want %+v, error %q", st.Ceilings, st.Want, st.Error)
			}
			t.Logf("alpha ceilings read back: %+v", *st.Ceilings)
			return
		}
		d, _ := lv.DomainLookupByName("alpha")
		params := map[string]string{}
		collect := func(ps []libvirt.TypedParam, err error) {
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				params[p.Field] = fmt.Sprint(p.Value.I)
			}
		}
		sp, err := lv.DomainGetSchedulerParametersFlags(d, 16, 0)
		collect(sp, err)
		mp, _, err := lv.DomainGetMemoryParameters(d, 16, 0)
		collect(mp, err)
		bp, _, err := lv.DomainGetBlkioParameters(d, 16, uint32(libvirt.TypedParamStringOkay))
		collect(bp, err)
		want := map[string]string{
			"global_quota": "50000", "global_period": "100000", "cpu_shares": "200",
			"device_read_iops_sec":  m.io.Path + ",100",
			"device_write_iops_sec": m.io.Path + ",100",
			"device_read_bytes_sec": fmt.Sprintf("%s,%d", m.io.Path, 10*config.Mi),
		}
		files := []struct{ ctrl, file, want string }{
			{"cpu", "cpu.cfs_quota_us", "50000"},
			{"cpu", "cpu.cfs_period_us", "100000"},
			{"blkio", "blkio.throttle.read_iops_device", m.io.Dev + " 100"},
			{"blkio", "blkio.throttle.write_bps_device", fmt.Sprintf("%s %d", m.io.Dev, 10*config.Mi)},
		}
		if memTune {
			want["hard_limit"] = fmt.Sprint(300 * 1024) // KiB
			files = append(files, struct{ ctrl, file, want string }{"memory", "memory.limit_in_bytes", fmt.Sprint(300 * config.Mi)})
		}
		for k, v := range want {
			if params[k] != v {
				t.Errorf("libvirt %s = %q, want %q", k, params[k], v)
			}
		}
		// What the kernel holds: the v1 files of alpha's group.
		groups := v1Groups(t, st.PID)
		for _, f := range files {
			g := groups[f.ctrl]
			if i := strings.Index(g, ".libvirt-qemu"); i >= 0 {
				g = g[:i+len(".libvirt-qemu")]
			}
			p := filepath.Join("/sys/fs/cgroup", f.ctrl, g, f.file)
			b, err := os.ReadFile(p)
			if got := strings.TrimSpace(string(b)); err != nil || got != f.want {
				t.Errorf("%s = %q (%v), want %q", p, got, err, f.want)
			}
		}
	})

	t.Run("filter", func(t *testing.T) {
		chains, err := m.FilterChains()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{PortChain(TapName("alpha")), PortChain(TapName("beta"))}
		slices.Sort(want)
		if !slices.Equal(chains, want) {
			t.Errorf("chains %v, want %v", chains, want)
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		actions, err := m.Reconcile(ctx)
		if err != nil || len(actions) != 0 {
			t.Errorf("second reconcile: %v, %v; want nothing to do", actions, err)
		}
	})

	t.Run("api", func(t *testing.T) {
		sock := filepath.Join(dir, "vmm.sock")
		l, err := Listen(sock, os.Getgid())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if st, _ := os.Stat(sock); st.Mode().Perm() != 0o660 {
			t.Errorf("socket mode %v", st.Mode())
		}
		go Serve(l, m)
		c := &Client{Socket: sock}
		list, err := c.List(ctx)
		if err != nil || len(list) != 4 {
			t.Fatalf("list: %v %v", list, err)
		}
		for _, s := range list {
			t.Logf("%s: state=%s reason=%s pid=%d failed=%v error=%q", s.Name, s.State, s.Reason, s.PID, s.Failed, s.Error)
		}
		if list[3].Name != "delta" || list[3].State != "shutoff" {
			t.Errorf("delta before start: %+v", list[3])
		}
		t0 := time.Now()
		st, err := c.Start(ctx, "delta")
		if err != nil || st.State != "running" {
			t.Fatalf("start delta: %+v %v", st, err)
		}
		d := waitConsole(t, ConsolePath(data, "delta"), testguest.UpLine("delta"), 30*time.Second)
		t.Logf("delta: started in %v, marker %v later", time.Since(t0)-d, d.Round(time.Millisecond))
		con, err := c.Console(ctx, "delta")
		if err != nil || !bytes.Contains(con, []byte(testguest.UpLine("delta"))) {
			t.Errorf("console: %q %v", con, err)
		}
		t0 = time.Now()
		st, err = c.Stop(ctx, "delta")
		if err != nil || st.State != "shutoff" || st.Reason != "shutdown" {
			t.Errorf("stop delta: %+v %v", st, err)
		}
		t.Logf("delta: ACPI stop took %v", time.Since(t0).Round(time.Millisecond))
		if b, _ := os.ReadFile(ConsolePath(data, "delta")); !bytes.Contains(b, []byte(testguest.PoweringOffLine("delta"))) {
			t.Errorf("delta did not see the power button: %q", b)
		}
		if _, err := c.Get(ctx, "nope"); !errors.Is(err, ErrUnknownGuest) {
			t.Errorf("get nope: %v", err)
		}
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return net.Dial("unix", sock)
		}}}
		resp, err := hc.Post("http://vmm/v1/guests/nope/start", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e ErrorReply
		if resp.StatusCode != 404 || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "unknown guest") {
			t.Errorf("POST nope/start: %d %s", resp.StatusCode, body)
		}
		st, err = c.Get(ctx, "beta")
		if err != nil || st.State != "running" {
			t.Errorf("beta meanwhile: %+v %v", st, err)
		}
	})

	t.Run("oom", func(t *testing.T) {
		// A guest whose memory ceiling is below what it touches is killed,
		// restarted MaxRestarts times, then left failed.
		if !memTune {
			t.Skip("no memory ceiling on this host (see above)")
		}
		hog := Guest{Spec: spec("hog", false, config.Limits{Memory: 96 * config.Mi}), Bridge: "hvbr0", VID: 10}
		hog.Spec.Memory = 160 * config.Mi
		m2, err := New(append(slices.Clone(guests), hog), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		if err := m2.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Reconcile(ctx); err == nil || !strings.Contains(err.Error(), "gamma") {
			t.Errorf("reconcile with hog: %v", err)
		}
		if err := m2.Start(ctx, "hog"); err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { m2.Run(runCtx); close(done) }()
		defer func() { stop(); <-done }()
		deadline := time.Now().Add(60 * time.Second)
		for {
			st, _ := m2.Get("hog")
			if st.Failed {
				t.Logf("hog: %+v", st)
				if st.Restarts != 1 || st.State != "shutoff" || !strings.Contains(st.Reason, "crashed") {
					t.Errorf("hog: %+v", st)
				}
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(ConsolePath(data, "hog"))
				t.Fatalf("hog not failed: %+v\nconsole: %q", st, b)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if b, _ := os.ReadFile(ConsolePath(data, "hog")); bytes.Contains(b, []byte(testguest.TouchedLine("hog", 120))) {
			t.Errorf("hog touched all its memory despite the ceiling")
		}
		time.Sleep(2 * time.Second)
		if st, _ := m2.Get("hog"); st.Restarts != 1 || st.State != "shutoff" {
			t.Errorf("hog restarted again: %+v", st)
		}
	})

	t.Run("remove", func(t *testing.T) {
		// vmm restarted with beta and hog gone from the config: it takes
		// over alpha, which keeps running, and undefines beta and hog.
		m3, err := New([]Guest{guests[0], guests[2], guests[3]}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer m3.Close()
		if err := m3.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		actions, err := m3.Reconcile(ctx)
		want := []Action{{"beta", "undefined"}, {"gamma", "failed"}}
		if memTune {
			want = []Action{{"beta", "undefined"}, {"hog", "undefined"}, {"gamma", "failed"}}
		}
		if !slices.Equal(actions, want) || !errors.Is(err, ErrDiskMissing) {
			t.Errorf("reconcile without beta: %v %v", actions, err)
		}
		if _, err := lv.DomainLookupByName("beta"); !libvirt.IsNotFound(err) {
			t.Errorf("beta still defined: %v", err)
		}
		if st, _ := m3.Get("alpha"); st.State != "running" {
			t.Errorf("alpha: %+v", st)
		}
		chains, _ := m3.FilterChains()
		if !slices.Equal(chains, []string{PortChain(TapName("alpha"))}) {
			t.Errorf("chains: %v", chains)
		}
		t0 := time.Now()
		if err := m3.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("shutdown took %v", time.Since(t0).Round(time.Millisecond))
		if st, _ := m3.Get("alpha"); st.State != "shutoff" || st.Reason != "shutdown" {
			t.Errorf("alpha after shutdown: %+v", st)
		}
		if chains, err := m3.FilterChains(); err != nil || len(chains) != 0 {
			t.Errorf("filter after shutdown: %v %v", chains, err)
		}
	})
	// Leave nothing running in the test's libvirtd.
	m.Shutdown(context.Background())
}

// v1Groups reads a process's cgroup v1 paths by controller.
func v1Groups(t *testing.T, pid int) map[string]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			out[c] = f[2]
		}
	}
	return out
}
