// Package vmm runs the config's guests through libvirt: it defines one
// domain per guest (Domain: libvirtxml, ceilings as libvirt tunables, vmm's
// mark in the metadata), undefines the domains it defined that the config no
// longer has, makes each guest's disk on the data partition, starts the
// autostart guests, plugs each guest's tap into its network's VLAN and
// behind an anti-spoofing filter (nftables, family netdev, on the tap), writes pids.max,
// reads the guest's cgroup back and compares it with the ceilings, watches
// the guests (every CheckInterval and on libvirt's lifecycle events),
// restarts a crashed guest a few times with backoff, and at the end shuts
// every guest down by ACPI. Handler serves the guests' status and the
// start/stop/restart/console actions on a unix socket; Client calls it.
package vmm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/cgroups"
)

// DefaultLibvirtSocket is libvirtd's read-write unix socket.
const DefaultLibvirtSocket = "/run/libvirt/libvirt-sock"

// ConsoleTail is how much of a console log Console gives: the last 64 KiB.
const ConsoleTail = 64 << 10

// consoleRotate is the size beyond which a console log is moved to
// console.log.1 before the guest starts again.
const consoleRotate = 1 << 20

// ErrUnknownGuest is what an error about a guest the config does not have wraps.
var ErrUnknownGuest = errors.New("unknown guest")

// Options configure a Manager. Zero fields take the defaults given.
type Options struct {
	// Socket is libvirtd's unix socket; default DefaultLibvirtSocket.
	Socket string
	// Type is the domain type, TypeQEMU (default) or TypeKVM.
	Type string
	// DataDir holds the guests' disks and console logs; default config.DataDir.
	DataDir string
	// ImagePath gives where a guest's image is; default config.GuestImagePath.
	ImagePath func(guest string) string
	// Cgroup is the cgroup2 mount; default cgroups.Mount.
	Cgroup string
	// SkipCeilings neither writes pids.max nor reads the ceilings back: for
	// hosts without cgroup v2 controllers (test machines on cgroup v1). The
	// appliance never sets it.
	SkipCeilings bool
	// NetNS is the network namespace (a path such as /proc/PID/ns/net)
	// where libvirtd makes the taps; empty is vmm's own.
	NetNS string
	// NoVLAN plugs taps into bridges without VLAN filtering: for test
	// kernels built without it. The appliance never sets it.
	NoVLAN bool
	// Sysfs and Proc are where sysfs and procfs are mounted; default /sys, /proc.
	Sysfs, Proc string
	// ShutdownTimeout is how long a guest has to power off after the ACPI
	// power button before it is destroyed; default 30s.
	ShutdownTimeout time.Duration
	// CheckInterval is the time between checks of the guests; default 5s.
	CheckInterval time.Duration
	// MaxRestarts is how often a crashed guest is started again before it
	// is left failed; default 3. RestartBackoff is the first wait (default
	// 2s), doubling each time; StableAfter is the run time after which the
	// count starts over (default 10m).
	MaxRestarts    int
	RestartBackoff time.Duration
	StableAfter    time.Duration
	// Logger gets one line per action; nil discards.
	Logger *slog.Logger
	// Reconciled, when set, is called once, after Run's first reconcile:
	// every guest is defined and the autostart ones started (or failed).
	Reconciled func()
}

func (o *Options) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Socket, DefaultLibvirtSocket)
	def(&o.Type, TypeQEMU)
	def(&o.DataDir, config.DataDir)
	def(&o.Cgroup, cgroups.Mount)
	def(&o.Sysfs, "/sys")
	def(&o.Proc, "/proc")
	if o.ImagePath == nil {
		o.ImagePath = config.GuestImagePath
	}
	dur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	dur(&o.ShutdownTimeout, 30*time.Second)
	dur(&o.CheckInterval, 5*time.Second)
	dur(&o.RestartBackoff, 2*time.Second)
	dur(&o.StableAfter, 10*time.Minute)
	if o.MaxRestarts == 0 {
		o.MaxRestarts = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Status is a guest as vmm sees it.
type Status struct {
	Name string `json:"name"`
	// State is libvirt's: running, paused, shutdown (powering off),
	// shutoff, crashed, pmsuspended, blocked; "undefined" before vmm
	// defined the domain.
	State string `json:"state"`
	// Reason is why the guest is in State (libvirt's reason: "crashed",
	// "shutdown", "destroyed", …), with the OOM killer named when it
	// killed the guest.
	Reason    string `json:"reason,omitempty"`
	Autostart bool   `json:"autostart"`
	// Failed is set when vmm gave up on the guest: it cannot start (Error
	// says why) or crashed more than MaxRestarts times.
	Failed bool `json:"failed,omitempty"`
	// ID is libvirt's domain ID and PID QEMU's, while running.
	ID  int `json:"id,omitempty"`
	PID int `json:"pid,omitempty"`
	// Label is the SELinux label libvirt gave the guest (its MCS
	// categories tell guests apart); empty without SELinux.
	Label  string `json:"label,omitempty"`
	Tap    string `json:"tap"`
	Bridge string `json:"bridge"`
	VID    int    `json:"vid"`
	// Cgroup is the guest's group under the cgroup2 mount; Ceilings its
	// ceilings as read back, and Want what they should be.
	Cgroup   string    `json:"cgroup,omitempty"`
	Ceilings *Ceilings `json:"ceilings,omitempty"`
	Want     Ceilings  `json:"want"`
	// Restarts counts the automatic restarts since the last stable run.
	Restarts int `json:"restarts"`
	// Error is the last thing that went wrong with the guest; ceilings
	// that read back wrong are one.
	Error string `json:"error,omitempty"`
	// Since is when State last changed, as vmm noticed.
	Since time.Time `json:"since"`
}

// Action is one change Reconcile made.
type Action struct {
	Guest string `json:"guest"`
	// Do is "defined", "redefined", "undefined", "started", "failed".
	Do string `json:"do"`
}

// Manager runs the guests.
type Manager struct {
	opts       Options
	log        *slog.Logger
	reconciled sync.Once
	guests     []*guest
	byName     map[string]*guest
	io         BlockDevice
	ioErr      error

	connMu sync.Mutex
	lv     *libvirt.Libvirt

	netMu sync.Mutex
	net   *hostNet
	ports map[string]Port // guest name → port in the filter

	mu   sync.Mutex // the guests' bookkeeping below
	kick chan struct{}
}

type guest struct {
	g   Guest
	op  sync.Mutex // one start, stop or check at a time
	dom libvirtxml.Domain

	// guarded by Manager.mu
	st        Status
	want      bool // should be running
	startedAt time.Time
	nextStart time.Time
	starting  bool   // between the budget check and running (or failing)
	setupID   int    // domain ID whose port, pids.max and check ran
	oomSeen   uint64 // oom_kill of the guest's parent group, last seen running
	cgParent  string
	buildErr  error
}

// New makes a Manager for guests. The data directory's block device is
// looked up here; a guest with I/O ceilings fails if there is none.
func New(guests []Guest, opts Options) (*Manager, error) {
	opts.defaults()
	m := &Manager{opts: opts, log: opts.Logger, byName: map[string]*guest{}, ports: map[string]Port{},
		kick: make(chan struct{}, 1)}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "guests"), 0o755); err != nil {
		return nil, err
	}
	m.io, m.ioErr = dataDevice(opts.Sysfs, opts.DataDir)
	taps := map[string]string{}
	for _, g := range guests {
		name := g.Spec.Name
		if _, dup := m.byName[name]; dup {
			return nil, fmt.Errorf("vmm: guest %s listed twice", name)
		}
		tap := TapName(name)
		gs := &guest{g: g, want: g.Spec.Autostart}
		gs.st = Status{Name: name, State: "undefined", Autostart: g.Spec.Autostart, Tap: tap, Bridge: g.Bridge, VID: g.VID,
			Want: WantCeilings(g.Spec.Limits, m.io.Dev)}
		d, err := Domain(g, DomainOptions{Type: opts.Type, DataDir: opts.DataDir, IODevice: m.io.Path})
		if err == nil {
			if other, clash := taps[tap]; clash {
				err = fmt.Errorf("guest %s: tap name %s is also guest %s's", name, tap, other)
			}
		}
		if err != nil && (g.Spec.Limits.IOPS > 0 || g.Spec.Limits.Bandwidth > 0) && m.ioErr != nil {
			err = fmt.Errorf("%w (%v)", err, m.ioErr)
		}
		taps[tap] = name
		if err != nil {
			gs.buildErr = err
			gs.st.Failed, gs.st.Error = true, err.Error()
		} else {
			gs.dom = *d
		}
		m.guests = append(m.guests, gs)
		m.byName[name] = gs
	}
	n, err := openHostNet(opts.NetNS)
	if err != nil {
		return nil, err
	}
	m.net = n
	return m, nil
}

// dataDevice finds the whole disk holding dir.
func dataDevice(sysfs, dir string) (BlockDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return BlockDevice{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	return WholeDisk(sysfs, unix.Major(st.Dev), unix.Minor(st.Dev))
}

// Close disconnects from libvirtd. Guests keep running.
func (m *Manager) Close() error {
	m.connMu.Lock()
	lv := m.lv
	m.lv = nil
	m.connMu.Unlock()
	m.netMu.Lock()
	if m.net != nil {
		m.net.Close()
		m.net = nil
	}
	m.netMu.Unlock()
	if lv != nil {
		return lv.Disconnect()
	}
	return nil
}

// Connect connects to libvirtd, waiting for its socket until ctx is done.
func (m *Manager) Connect(ctx context.Context) error {
	var last error
	for {
		lv := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(m.opts.Socket), dialers.WithLocalTimeout(5*time.Second)))
		if last = lv.Connect(); last == nil {
			m.connMu.Lock()
			old := m.lv
			m.lv = lv
			m.connMu.Unlock()
			if old != nil {
				old.Disconnect()
			}
			m.log.Info("connected to libvirtd", "socket", m.opts.Socket)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("libvirtd at %s: %w (last: %v)", m.opts.Socket, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (m *Manager) conn() (*libvirt.Libvirt, error) {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.lv == nil || !m.lv.IsConnected() {
		return nil, errors.New("not connected to libvirtd")
	}
	return m.lv, nil
}

// Reconcile makes libvirt hold what the config says: every guest defined
// (redefined when its domain changed), vmm's domains of guests no longer
// configured stopped and undefined, and the autostart guests started.
// Domains vmm did not define are left alone. A guest that fails (its disk,
// its domain) fails alone; the error joins theirs. Running it again changes
// nothing.
func (m *Manager) Reconcile(ctx context.Context) ([]Action, error) {
	lv, err := m.conn()
	if err != nil {
		return nil, err
	}
	doms, _, err := lv.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive|libvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	owned := map[string]string{} // name → spec hash
	foreign := map[string]bool{}
	for _, d := range doms {
		x, err := lv.DomainGetXMLDesc(d, libvirt.DomainXMLInactive)
		if err != nil {
			continue // gone meanwhile
		}
		var dx libvirtxml.Domain
		if err := dx.Unmarshal(x); err != nil {
			return nil, fmt.Errorf("domain %s: %w", d.Name, err)
		}
		if md := OwnMetadata(&dx); md != nil {
			owned[d.Name] = md.Spec
		} else {
			foreign[d.Name] = true
		}
	}
	var actions []Action
	var errs []error
	for _, g := range m.guests {
		name := g.g.Spec.Name
		if g.buildErr != nil {
			errs = append(errs, g.buildErr)
			continue
		}
		if foreign[name] {
			err := fmt.Errorf("guest %s: a domain of that name exists that vmm did not define; leaving it alone", name)
			m.setError(g, err, true)
			errs = append(errs, err)
			continue
		}
		want := OwnMetadata(&g.dom).Spec
		if have, ok := owned[name]; ok && have == want {
			continue
		}
		x, err := g.dom.Marshal()
		if err == nil {
			_, err = lv.DomainDefineXML(x)
		}
		if err != nil {
			err = fmt.Errorf("guest %s: define: %w", name, err)
			m.setError(g, err, true)
			errs = append(errs, err)
			continue
		}
		do := "defined"
		if _, ok := owned[name]; ok {
			do = "redefined"
		}
		m.log.Info(do+" guest", "guest", name)
		actions = append(actions, Action{Guest: name, Do: do})
	}
	for _, name := range slices.Sorted(mapKeys(owned)) {
		if _, ok := m.byName[name]; ok {
			continue
		}
		d, err := lv.DomainLookupByName(name)
		if err != nil {
			continue
		}
		if state, _, err := lv.DomainGetState(d, 0); err == nil && libvirt.DomainState(state) != libvirt.DomainShutoff {
			m.shutdownDomain(ctx, lv, d)
		}
		if err := lv.DomainUndefineFlags(d, libvirt.DomainUndefineManagedSave); err != nil {
			errs = append(errs, fmt.Errorf("domain %s: undefine: %w", name, err))
			continue
		}
		m.log.Info("undefined domain of a guest no longer configured", "guest", name)
		actions = append(actions, Action{Guest: name, Do: "undefined"})
	}
	m.check(ctx)
	for _, g := range m.guests {
		if g.buildErr != nil {
			continue
		}
		m.mu.Lock()
		start := g.want && !g.st.Failed && g.startedAt.IsZero() && g.st.State != "running" && g.st.State != "paused"
		m.mu.Unlock()
		if !start {
			continue
		}
		g.op.Lock()
		err := m.start(ctx, g)
		g.op.Unlock()
		if err != nil {
			errs = append(errs, err)
			actions = append(actions, Action{Guest: g.g.Spec.Name, Do: "failed"})
			continue
		}
		actions = append(actions, Action{Guest: g.g.Spec.Name, Do: "started"})
	}
	return actions, errors.Join(errs...)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Run watches the guests until ctx is done: every CheckInterval, on
// libvirt's lifecycle events and after each action. It connects (waiting
// for libvirtd) and reconciles first, and again whenever the connection is
// lost. The guests keep running when it returns; Shutdown stops them.
func (m *Manager) Run(ctx context.Context) error {
	for {
		if err := m.Connect(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		lv, err := m.conn()
		if err != nil {
			continue
		}
		if _, err := m.Reconcile(ctx); err != nil {
			m.log.Error("reconcile", "err", err)
		}
		m.reconciled.Do(func() {
			if m.opts.Reconciled != nil {
				m.opts.Reconciled()
			}
		})
		evctx, cancel := context.WithCancel(ctx)
		events, err := lv.LifecycleEvents(evctx)
		if err != nil {
			m.log.Warn("no lifecycle events; checking every interval only", "err", err)
		}
		tick := time.NewTicker(m.opts.CheckInterval)
		lost := false
		for !lost {
			select {
			case <-ctx.Done():
				tick.Stop()
				cancel()
				return nil
			case <-lv.Disconnected():
				m.log.Warn("lost the connection to libvirtd; reconnecting")
				lost = true
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				m.log.Debug("lifecycle event", "guest", ev.Dom.Name, "event", libvirt.DomainEventType(ev.Event).String(), "detail", ev.Detail)
				m.check(ctx)
			case <-m.kick:
				m.check(ctx)
			case <-tick.C:
				m.check(ctx)
			}
		}
		tick.Stop()
		cancel()
	}
}

// check refreshes every guest's status and restarts crashed ones within
// their budget. Guests busy with an action are skipped.
func (m *Manager) check(ctx context.Context) {
	for _, g := range m.guests {
		if g.buildErr != nil || !g.op.TryLock() {
			continue
		}
		m.checkGuest(ctx, g)
		g.op.Unlock()
	}
}

func (m *Manager) checkGuest(ctx context.Context, g *guest) {
	name := g.g.Spec.Name
	lv, err := m.conn()
	if err != nil {
		return
	}
	d, err := lv.DomainLookupByName(name)
	if err != nil {
		if libvirt.IsNotFound(err) {
			m.setState(g, "undefined", "", 0)
		}
		return
	}
	state, reason, err := lv.DomainGetState(d, 0)
	if err != nil {
		return
	}
	st := stateName(libvirt.DomainState(state))
	why := reasonName(libvirt.DomainState(state), reason)
	if st == "running" || st == "paused" || st == "blocked" {
		m.mu.Lock()
		needSetup := g.setupID != int(d.ID)
		m.mu.Unlock()
		m.setState(g, st, why, int(d.ID))
		if needSetup {
			// A guest that was running before vmm (re)started.
			if err := m.setUp(ctx, lv, g, d); err != nil {
				m.log.Error("guest set-up failed; destroying it", "guest", name, "err", err)
				lv.DomainDestroy(d)
				m.unplug(g)
				m.setError(g, err, true)
				m.mu.Lock()
				g.want = false
				m.mu.Unlock()
			}
			return
		}
		m.readBack(g, d)
		return
	}
	// Not running.
	m.unplug(g)
	m.mu.Lock()
	oom := false
	if g.cgParent != "" && (st == "shutoff" || st == "crashed") && g.setupID != 0 {
		if n, err := oomKills(g.cgParent); err == nil && n > g.oomSeen {
			oom = true
		}
	}
	wasRunning := g.setupID != 0
	g.setupID = 0
	g.st.PID, g.st.ID, g.st.Cgroup, g.st.Ceilings = 0, 0, "", nil
	m.mu.Unlock()
	if oom {
		why = fmt.Sprintf("%s: killed by the OOM killer (memory ceiling %s)", why, g.g.Spec.Limits.Memory)
	}
	m.setState(g, st, why, 0)
	crashed := st == "crashed" || (st == "shutoff" && (reason == int32(libvirt.DomainShutoffCrashed) || reason == int32(libvirt.DomainShutoffFailed)))
	if wasRunning {
		m.log.Info("guest stopped", "guest", name, "state", st, "reason", why)
	}
	m.mu.Lock()
	switch {
	case !g.want || g.st.Failed:
		m.mu.Unlock()
		return
	case !crashed && wasRunning:
		// It powered itself off: that is the guest's choice.
		g.want = false
		m.mu.Unlock()
		return
	case !crashed:
		// Never started here: Reconcile and Start do first starts.
		m.mu.Unlock()
		return
	}
	if !g.startedAt.IsZero() && time.Since(g.startedAt) > m.opts.StableAfter {
		g.st.Restarts = 0
	}
	if g.st.Restarts >= m.opts.MaxRestarts {
		g.st.Failed = true
		g.st.Error = fmt.Sprintf("crashed %d times in a row (%s); left off until started again", g.st.Restarts+1, why)
		m.mu.Unlock()
		m.log.Error("guest keeps crashing; leaving it off", "guest", name, "restarts", g.st.Restarts, "reason", why)
		return
	}
	if g.nextStart.IsZero() {
		g.nextStart = time.Now().Add(m.opts.RestartBackoff << g.st.Restarts)
		m.log.Info("guest crashed; restarting after backoff", "guest", name, "reason", why,
			"in", (m.opts.RestartBackoff << g.st.Restarts).String(), "restart", g.st.Restarts+1)
	}
	due := !time.Now().Before(g.nextStart)
	if due {
		g.st.Restarts++
		g.nextStart = time.Time{}
	}
	m.mu.Unlock()
	if !due {
		m.later(time.Until(g.nextStart))
		return
	}
	if err := m.start(ctx, g); err != nil {
		m.log.Error("restart failed", "guest", name, "err", err)
	}
}

// later kicks a check after d.
func (m *Manager) later(d time.Duration) {
	time.AfterFunc(d, func() {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	})
}

// start starts the guest; g.op is held.
func (m *Manager) start(ctx context.Context, g *guest) error {
	name := g.g.Spec.Name
	t0 := time.Now()
	if g.buildErr != nil {
		return g.buildErr
	}
	lv, err := m.conn()
	if err != nil {
		return err
	}
	if err := m.reserve(g); err != nil {
		m.setError(g, err, true)
		m.log.Error("guest cannot start", "guest", name, "err", err)
		return err
	}
	defer m.release(g)
	made, err := PrepareDisk(m.opts.DataDir, g.g.Spec, m.opts.ImagePath(name))
	if err != nil {
		m.setError(g, err, true)
		m.log.Error("guest cannot start", "guest", name, "err", err)
		return err
	}
	if made {
		m.log.Info("made guest disk", "guest", name, "size", g.g.Spec.Disk.String(), "image", g.g.Spec.Image != "")
	}
	rotateConsole(ConsolePath(m.opts.DataDir, name))
	d, err := lv.DomainLookupByName(name)
	if err != nil {
		err = fmt.Errorf("guest %s: %w", name, err)
		m.setError(g, err, false)
		return err
	}
	// Paused until its tap is filtered (the filter hooks the tap, which
	// exists only once libvirt has made it) and set up: the guest sends
	// nothing unfiltered.
	if _, err := lv.DomainCreateWithFlags(d, uint32(libvirt.DomainStartPaused)); err != nil {
		m.unplug(g)
		err = fmt.Errorf("guest %s: start: %w", name, err)
		m.setError(g, err, false)
		m.log.Error("guest did not start", "guest", name, "err", err)
		return err
	}
	d, err = lv.DomainLookupByName(name) // now with its ID
	if err == nil {
		err = m.setUp(ctx, lv, g, d)
	}
	if err == nil {
		if err = lv.DomainResume(d); err != nil {
			err = fmt.Errorf("guest %s: resume: %w", name, err)
		}
	}
	if err != nil {
		lv.DomainDestroy(d)
		m.unplug(g)
		m.setError(g, err, true)
		m.log.Error("guest set-up failed; destroyed it", "guest", name, "err", err)
		return err
	}
	m.mu.Lock()
	g.startedAt = time.Now()
	g.st.Error = ""
	m.mu.Unlock()
	m.setState(g, "running", "booted", int(d.ID))
	m.log.Info("started guest", "guest", name, "id", d.ID, "pid", g.st.PID, "took", time.Since(t0).Round(time.Millisecond).String())
	m.readBack(g, d)
	return nil
}

// setUp does what a running guest needs beyond libvirt: its tap in the
// filter and on its VLAN, pids.max in its cgroup.
func (m *Manager) setUp(ctx context.Context, lv *libvirt.Libvirt, g *guest, d libvirt.Domain) error {
	name := g.g.Spec.Name
	if err := m.plug(g); err != nil {
		return err
	}
	if g.g.Bridge != "" {
		m.netMu.Lock()
		n := m.net
		var err error
		if n == nil {
			err = errors.New("closed")
		} else {
			err = n.SetAccessPort(TapName(name), g.g.Bridge, g.g.VID, m.opts.NoVLAN)
		}
		m.netMu.Unlock()
		if err != nil {
			return fmt.Errorf("guest %s: %w", name, err)
		}
	}
	pid := findPID(m.opts.Proc, UUID(name))
	var cg string
	if pid > 0 {
		if f, err := os.Open(filepath.Join(m.opts.Proc, strconv.Itoa(pid), "cgroup")); err == nil {
			cg, err = ParseDomainCgroup(f)
			f.Close()
			if err != nil && !m.opts.SkipCeilings {
				return fmt.Errorf("guest %s: %w", name, err)
			}
		}
	}
	if !m.opts.SkipCeilings {
		if cg == "" {
			return fmt.Errorf("guest %s: no cgroup found for QEMU (pid %d)", name, pid)
		}
		dir := filepath.Join(m.opts.Cgroup, cg)
		if n := g.g.Spec.Limits.PIDs; n > 0 {
			// libvirt does not enable the pids controller for its groups.
			_ = os.WriteFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"), []byte("+pids"), 0)
			if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.Itoa(n)), 0); err != nil {
				return fmt.Errorf("guest %s: pids.max: %w", name, err)
			}
		}
	}
	label := ""
	if x, err := lv.DomainGetXMLDesc(d, 0); err == nil {
		var dx libvirtxml.Domain
		if dx.Unmarshal(x) == nil {
			label = SELinuxLabel(&dx)
		}
	}
	m.mu.Lock()
	g.setupID = int(d.ID)
	g.st.PID, g.st.Label = pid, label
	if cg != "" {
		g.st.Cgroup = cg
		g.cgParent = filepath.Dir(filepath.Join(m.opts.Cgroup, cg))
	}
	m.mu.Unlock()
	return nil
}

// readBack reads the running guest's ceilings and compares them.
func (m *Manager) readBack(g *guest, d libvirt.Domain) {
	m.mu.Lock()
	cg, parent, want := g.st.Cgroup, g.cgParent, g.st.Want
	m.mu.Unlock()
	if m.opts.SkipCeilings || cg == "" {
		return
	}
	c, err := ReadCeilings(filepath.Join(m.opts.Cgroup, cg), m.io.Dev)
	var msg string
	switch diff := c.Diff(want); {
	case err != nil:
		msg = "ceilings: " + err.Error()
	case len(diff) > 0:
		msg = "ceilings do not read back as set: " + strings.Join(diff, "; ")
	}
	n, _ := oomKills(parent)
	m.mu.Lock()
	defer m.mu.Unlock()
	if g.setupID != int(d.ID) {
		return
	}
	g.st.Ceilings = &c
	g.oomSeen = n
	if msg != "" && g.st.Error != msg {
		m.log.Error("guest ceilings", "guest", g.g.Spec.Name, "err", msg)
	}
	if msg != "" || strings.HasPrefix(g.st.Error, "ceilings") {
		g.st.Error = msg
	}
}

// oomKills reads oom_kill from dir's memory.events (it counts the
// subtree's kills).
func oomKills(dir string) (uint64, error) {
	f, err := os.Open(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ev, err := ParseMemoryEvents(f)
	return ev["oom_kill"], err
}

// plug adds the guest's port to the filter.
func (m *Manager) plug(g *guest) error {
	if g.g.Bridge == "" {
		return nil
	}
	s := g.g.Spec
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return fmt.Errorf("guest %s: mac: %w", s.Name, err)
	}
	p := Port{Tap: TapName(s.Name), MAC: mac}
	for _, a := range s.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("guest %s: address %q: %w", s.Name, a, err)
		}
		p.Addrs = append(p.Addrs, ip)
	}
	m.netMu.Lock()
	defer m.netMu.Unlock()
	if old, ok := m.ports[s.Name]; ok && old.Tap == p.Tap {
		return nil
	}
	m.ports[s.Name] = p
	if err := m.applyFilter(); err != nil {
		delete(m.ports, s.Name)
		return fmt.Errorf("guest %s: filter: %w", s.Name, err)
	}
	return nil
}

// unplug removes the guest's port from the filter.
func (m *Manager) unplug(g *guest) {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	if _, ok := m.ports[g.g.Spec.Name]; !ok {
		return
	}
	delete(m.ports, g.g.Spec.Name)
	if err := m.applyFilter(); err != nil {
		m.log.Error("filter", "guest", g.g.Spec.Name, "err", err)
	}
}

// applyFilter writes m.ports; netMu is held.
func (m *Manager) applyFilter() error {
	if m.net == nil {
		return errors.New("closed")
	}
	var ports []Port
	for _, name := range slices.Sorted(mapKeys(m.ports)) {
		ports = append(ports, m.ports[name])
	}
	return m.net.ApplyFilter(ports)
}

// FilterChains lists the chains of vmm's nftables table (for tests and
// diagnostics).
func (m *Manager) FilterChains() ([]string, error) {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	if m.net == nil {
		return nil, errors.New("closed")
	}
	return m.net.FilterChains()
}

// shutdownDomain presses the ACPI power button, waits up to
// ShutdownTimeout for the guest to power off and destroys it if not. It
// reports whether the guest powered off by itself.
func (m *Manager) shutdownDomain(ctx context.Context, lv *libvirt.Libvirt, d libvirt.Domain) bool {
	t0 := time.Now()
	if err := lv.DomainShutdown(d); err != nil {
		m.log.Warn("ACPI shutdown", "guest", d.Name, "err", err)
	}
	deadline := time.NewTimer(m.opts.ShutdownTimeout)
	defer deadline.Stop()
	for {
		state, _, err := lv.DomainGetState(d, 0)
		if err != nil || libvirt.DomainState(state) == libvirt.DomainShutoff {
			m.log.Info("guest powered off", "guest", d.Name, "took", time.Since(t0).Round(time.Millisecond).String())
			return true
		}
		select {
		case <-deadline.C:
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	if err := lv.DomainDestroy(d); err != nil {
		m.log.Error("destroy", "guest", d.Name, "err", err)
	} else {
		m.log.Info("guest did not power off in time; destroyed it", "guest", d.Name, "after", time.Since(t0).Round(time.Millisecond).String())
	}
	return false
}

// stop powers the guest off (ACPI, then destroy); g.op is held.
func (m *Manager) stop(ctx context.Context, g *guest) error {
	lv, err := m.conn()
	if err != nil {
		return err
	}
	m.mu.Lock()
	g.want = false
	m.mu.Unlock()
	d, err := lv.DomainLookupByName(g.g.Spec.Name)
	if libvirt.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("guest %s: %w", g.g.Spec.Name, err)
	}
	if state, _, err := lv.DomainGetState(d, 0); err == nil && libvirt.DomainState(state) == libvirt.DomainShutoff {
		m.unplug(g)
		return nil
	}
	m.shutdownDomain(ctx, lv, d)
	m.unplug(g)
	m.mu.Lock()
	g.setupID = 0
	g.st.PID, g.st.ID, g.st.Cgroup, g.st.Ceilings = 0, 0, "", nil
	m.mu.Unlock()
	m.checkGuest(ctx, g)
	return nil
}

// Start starts guest name (again), clearing a failure and the restart count.
func (m *Manager) Start(ctx context.Context, name string) error {
	g, err := m.guest(name)
	if err != nil {
		return err
	}
	g.op.Lock()
	defer g.op.Unlock()
	m.checkGuest(ctx, g)
	m.mu.Lock()
	running := g.st.State == "running" || g.st.State == "paused"
	g.want = true
	if g.buildErr == nil {
		g.st.Failed, g.st.Error = false, ""
	}
	g.st.Restarts, g.nextStart = 0, time.Time{}
	m.mu.Unlock()
	if running {
		return nil
	}
	return m.start(ctx, g)
}

// Stop shuts guest name down by ACPI, destroying it after ShutdownTimeout.
// It stays off until started.
func (m *Manager) Stop(ctx context.Context, name string) error {
	g, err := m.guest(name)
	if err != nil {
		return err
	}
	g.op.Lock()
	defer g.op.Unlock()
	return m.stop(ctx, g)
}

// Restart stops and starts guest name.
func (m *Manager) Restart(ctx context.Context, name string) error {
	if err := m.Stop(ctx, name); err != nil {
		return err
	}
	return m.Start(ctx, name)
}

// Shutdown stops every running guest at once (ACPI, then destroy after
// ShutdownTimeout) and waits for all of them.
func (m *Manager) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(m.guests))
	for i, g := range m.guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.op.Lock()
			defer g.op.Unlock()
			if g.buildErr != nil {
				return
			}
			errs[i] = m.stop(ctx, g)
		}()
	}
	wg.Wait()
	m.log.Info("all guests stopped")
	return errors.Join(errs...)
}

// List gives every guest's status, in config order.
func (m *Manager) List() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.guests))
	for _, g := range m.guests {
		out = append(out, g.st)
	}
	return out
}

// Get gives guest name's status.
func (m *Manager) Get(name string) (Status, error) {
	g, err := m.guest(name)
	if err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return g.st, nil
}

// Console gives the last ConsoleTail bytes of guest name's console log.
func (m *Manager) Console(name string) ([]byte, error) {
	if _, err := m.guest(name); err != nil {
		return nil, err
	}
	return tail(ConsolePath(m.opts.DataDir, name), ConsoleTail)
}

// Refresh checks every guest now.
func (m *Manager) Refresh(ctx context.Context) { m.check(ctx) }

func (m *Manager) guest(name string) (*guest, error) {
	g, ok := m.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownGuest, name)
	}
	return g, nil
}

func (m *Manager) setState(g *guest, state, reason string, id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g.st.State != state || g.st.Reason != reason {
		g.st.Since = time.Now()
	}
	g.st.State, g.st.Reason, g.st.ID = state, reason, id
}

func (m *Manager) setError(g *guest, err error, failed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g.st.Error = err.Error()
	if failed {
		g.st.Failed = true
	}
}

func stateName(s libvirt.DomainState) string {
	switch s {
	case libvirt.DomainRunning:
		return "running"
	case libvirt.DomainBlocked:
		return "blocked"
	case libvirt.DomainPaused:
		return "paused"
	case libvirt.DomainShutdown:
		return "shutdown"
	case libvirt.DomainShutoff:
		return "shutoff"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "pmsuspended"
	}
	return "nostate"
}

func reasonName(s libvirt.DomainState, r int32) string {
	switch s {
	case libvirt.DomainShutoff:
		return map[libvirt.DomainShutoffReason]string{
			libvirt.DomainShutoffShutdown: "shutdown", libvirt.DomainShutoffDestroyed: "destroyed",
			libvirt.DomainShutoffCrashed: "crashed", libvirt.DomainShutoffMigrated: "migrated",
			libvirt.DomainShutoffSaved: "saved", libvirt.DomainShutoffFailed: "failed",
			libvirt.DomainShutoffFromSnapshot: "from-snapshot", libvirt.DomainShutoffDaemon: "daemon",
		}[libvirt.DomainShutoffReason(r)]
	case libvirt.DomainPaused:
		if libvirt.DomainPausedReason(r) == libvirt.DomainPausedIoerror {
			return "ioerror"
		}
	case libvirt.DomainCrashed:
		return "panicked"
	}
	return ""
}

// findPID finds the QEMU process of the domain with uuid by its command
// line ("-uuid UUID"); 0 when there is none.
func findPID(proc, uuid string) int {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0
	}
	want := []byte("\x00-uuid\x00" + uuid + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, want) {
			return pid
		}
	}
	return 0
}

// rotateConsole moves a console log that grew past consoleRotate aside.
func rotateConsole(path string) {
	if st, err := os.Stat(path); err == nil && st.Size() > consoleRotate {
		os.Rename(path, path+".1")
	}
}

// tail reads the last n bytes of a file; a missing file is empty.
func tail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	return io.ReadAll(bufio.NewReader(io.NewSectionReader(f, off, st.Size()-off)))
}
