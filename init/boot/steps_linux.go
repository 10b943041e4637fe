package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/kernel"
	"hardvisor.dev/hardvisor/services/kernfs"
	"hardvisor.dev/hardvisor/services/spawn"
)

// Paths inside the image that the builder writes and PID 1 reads.
const (
	ConfigPath = "/etc/hardvisor/config.yaml"
)

// Mount is one file system PID 1 mounts.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

func (m Mount) String() string { return "mount " + m.Target }

// Run creates the mount point and mounts; an already mounted target is fine
// (the kernel may have mounted devtmpfs).
func (m Mount) Run() error {
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil
		}
		return fmt.Errorf("mount %s on %s: %w", m.FSType, m.Target, err)
	}
	return nil
}

const (
	nodev  = unix.MS_NODEV
	nosuid = unix.MS_NOSUID
	noexec = unix.MS_NOEXEC
)

// EarlyMounts are the kernel file systems every later step relies on, each with
// the most restrictive flags it tolerates.
var EarlyMounts = []Mount{
	{"proc", "/proc", "proc", nodev | nosuid | noexec, "hidepid=invisible"},
	{"sysfs", "/sys", "sysfs", nodev | nosuid | noexec, ""},
	{"devtmpfs", "/dev", "devtmpfs", nosuid | noexec, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"tmpfs", "/dev/shm", "tmpfs", nodev | nosuid | noexec, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", nodev | nosuid, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", nodev | nosuid | noexec, "mode=1777"},
	{"securityfs", "/sys/kernel/security", "securityfs", nodev | nosuid | noexec, ""},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", nodev | nosuid | noexec, "nsdelegate"},
}

// Consoles points the host's console writer at every active kernel console
// (tty0 and ttyS0 alike), so PID 1's lines appear wherever the kernel's do.
type Consoles struct{ Host *Host }

func (Consoles) String() string { return "consoles" }

// Run opens each console named in /sys/class/tty/console/active.
func (c Consoles) Run() error {
	b, err := os.ReadFile("/sys/class/tty/console/active")
	if err != nil {
		return err
	}
	var ws []io.Writer
	for _, name := range strings.Fields(string(b)) {
		f, err := os.OpenFile("/dev/"+name, os.O_WRONLY|unix.O_NOCTTY, 0)
		if err != nil {
			continue // a console the kernel lists but cannot open (no device) is not an error
		}
		ws = append(ws, f)
	}
	if len(ws) > 0 {
		c.Host.Console = io.MultiWriter(ws...)
	}
	return nil
}

// Optional: with no console device PID 1 still has the kernel's /dev/console.
func (Consoles) Optional() bool { return true }

// LoadConfig reads the config embedded in the image and applies the hosts[]
// override that matches one of this machine's MAC addresses.
type LoadConfig struct {
	Host *Host
	Path string
}

func (LoadConfig) String() string { return "config" }

// Run parses the config and selects this host's section.
func (s LoadConfig) Run() error {
	b, err := os.ReadFile(s.Path)
	if err != nil {
		return err
	}
	c, err := config.Parse(s.Path, b)
	if err != nil {
		return err
	}
	macs, err := MACs("/sys/class/net")
	if err != nil {
		return err
	}
	s.Host.Config = c.ForHost(macs)
	s.Host.Version = c.Version
	return nil
}

// MACs lists the hardware addresses of the machine's network interfaces, sorted.
func MACs(sysClassNet string) ([]string, error) {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil, err
	}
	var macs []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysClassNet, e.Name(), "address"))
		if err != nil {
			continue
		}
		if m := strings.TrimSpace(string(b)); m != "" && m != "00:00:00:00:00:00" {
			macs = append(macs, m)
		}
	}
	sort.Strings(macs)
	return macs, nil
}

// Hostname sets the kernel host name from the config, and writes
// /etc/hosts so the name resolves locally: without it a program that looks
// itself up (libvirt does, for every guest it starts) asks DNS, which the
// root namespace cannot reach.
type Hostname struct {
	Host *Host
	// Hosts is the hosts file; default /etc/hosts.
	Hosts string
}

func (Hostname) String() string { return "hostname" }

// Run sets the host name.
func (s Hostname) Run() error {
	name := s.Host.Config.Host.Hostname
	if err := unix.Sethostname([]byte(name)); err != nil {
		return err
	}
	if s.Hosts == "" {
		s.Hosts = "/etc/hosts"
	}
	return os.WriteFile(s.Hosts, HostsFile(name), 0o644)
}

// HostsFile is /etc/hosts for a host named name.
func HostsFile(name string) []byte {
	return []byte("127.0.0.1\tlocalhost\n127.0.1.1\t" + name + "\n::1\tlocalhost ip6-localhost\n")
}

// ModuleReport says what the modules step did.
type ModuleReport struct {
	Loaded []string
	// Absent maps a module to why the kernel refused it because its hardware
	// is not there (e.g. kvm_intel on an AMD machine).
	Absent map[string]string
}

// Modules loads, udev-style, the kernel modules on the image's allow-list that
// this machine needs: drivers whose aliases match a device's modalias, rescanned
// after each round because a loaded bus driver brings new devices, plus the
// modules the config's features need. Dependencies load first.
//
// The step only starts the loads: they run one after the other on a thread
// of their own, at a higher CPU priority than the rest of PID 1, while the
// next steps run; ModulesLoaded waits for them. A driver that sleeps while it
// probes its hardware (ahci waits about 0.3 s for its SATA links to settle)
// then costs the boot no time, and the priority makes the loads reach such a
// driver as early as they can even on one CPU.
type Modules struct {
	Host *Host
	// Dir holds the builder's modules.load, modules.dep and modules.alias.
	Dir string
	// Sysfs is where sysfs is mounted ("/sys").
	Sysfs string
}

func (Modules) String() string { return "modules" }

// UEFIModules are loaded whenever the firmware is UEFI: the data partition
// step reads the boot partition's GUID from an EFI variable.
var UEFIModules = []string{"efivarfs"}

// USBDiskModules are loaded when a UEFI host has a USB bus: a USB boot disk
// appears only after the modules step, too late for coldplug, and the data
// partition step waits for it.
var USBDiskModules = []string{"sd_mod", "usb_storage", "uas"}

// maxColdplugRounds bounds the rescans; real hardware settles in two or three.
const maxColdplugRounds = 8

// coldplugNice is the loading thread's nice value: with it the thread gets
// about nine tenths of a contended CPU.
const coldplugNice = -10

// coldplug is what the modules step's loads came to.
type coldplug struct {
	loader *ModuleLoader
	err    error
	// priority is why the loads ran at normal priority; nil when they did not.
	priority error
}

// Run starts the loads and returns.
func (s Modules) Run() error {
	// plan.New checked at build time that every feature module is on the
	// allow-list, so one the index lacks is built into the kernel.
	features := s.Host.Config.FeatureModules()
	done := make(chan coldplug, 1)
	s.Host.coldplug = done
	// One more P than CPUs while the loads run: the loading thread then runs
	// its Go code whenever the kernel schedules it, by its priority, instead
	// of waiting for the Go scheduler to hand it the one P of a 1-CPU host
	// after each module (up to a 10 ms time slice each).
	procs := runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	go func() {
		// Never unlocked: the thread, and its priority, end with the goroutine.
		runtime.LockOSThread()
		prio := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), coldplugNice)
		ld, err := s.load(features)
		runtime.GOMAXPROCS(procs)
		done <- coldplug{loader: ld, err: err, priority: prio}
	}()
	return nil
}

// load loads the modules. A module the kernel refuses because its hardware
// is missing is recorded; any other failure is an error.
func (s Modules) load(features []string) (*ModuleLoader, error) {
	ld, err := NewModuleLoader(s.Dir)
	if err != nil {
		return nil, err
	}
	uefi := exists(filepath.Join(s.Sysfs, "firmware/efi"))
	if uefi {
		features = append(features, UEFIModules...)
	}
	devs := &devices{sysfs: s.Sysfs, buses: ld.ix.Buses()}
	usb := false
	for round := 0; round < maxColdplugRounds; round++ {
		if uefi && !usb && hasUSBBus(s.Sysfs) {
			usb = true
			features = append(features, USBDiskModules...)
		}
		fresh, err := ld.Load(append(ld.ix.Match(devs.scan()), features...)...)
		if err != nil {
			return nil, err
		}
		if fresh == 0 {
			break
		}
	}
	return ld, nil
}

// ModulesLoaded waits for the loads the modules step started and records
// what they did; a load that failed stops the boot here.
type ModulesLoaded struct{ Host *Host }

func (ModulesLoaded) String() string { return "modules loaded" }

// Run waits for the loads.
func (s ModulesLoaded) Run() error {
	h := s.Host
	if h.coldplug == nil {
		return errors.New("the modules step has not run")
	}
	c := <-h.coldplug
	h.coldplug = nil
	if c.priority != nil {
		h.Logf("modules: loaded at normal priority: %v", c.priority)
	}
	if c.err != nil {
		return c.err
	}
	h.Modules = c.loader.Report
	h.modules = c.loader
	return nil
}

// hasUSBBus reports whether a USB host controller's root hub is registered.
func hasUSBBus(sysfs string) bool {
	ents, _ := os.ReadDir(filepath.Join(sysfs, "bus/usb/devices"))
	return len(ents) > 0
}

// ModuleLoader loads modules from the image's allow-list by name, with their
// dependencies first, each once; Report says what it did.
type ModuleLoader struct {
	ix     *kernel.Index
	done   map[string]bool
	Report ModuleReport
}

// NewModuleLoader reads the builder's index in dir.
func NewModuleLoader(dir string) (*ModuleLoader, error) {
	ix, err := kernel.ReadIndex(dir)
	if err != nil {
		return nil, err
	}
	return &ModuleLoader{ix: ix, done: map[string]bool{}, Report: ModuleReport{Absent: map[string]string{}}}, nil
}

// Load loads the named modules (those the index lacks are built into the
// kernel) and their dependencies, and gives how many it had not loaded
// before. A module the kernel refuses because its hardware is missing is
// recorded in Report.Absent; any other failure is an error.
func (l *ModuleLoader) Load(names ...string) (fresh int, err error) {
	var known []string
	for _, n := range names {
		if l.ix.Has(n) {
			known = append(known, n)
		}
	}
	paths, err := l.ix.Closure(known)
	if err != nil {
		return 0, fmt.Errorf("config needs a module the image lacks: %w", err)
	}
	for _, p := range paths {
		if l.done[p] {
			continue
		}
		l.done[p] = true
		fresh++
		name := strings.ReplaceAll(strings.TrimSuffix(path.Base(p), ".ko"), "-", "_")
		switch err := loadModule(p, moduleParams[name]); {
		case err == nil, errors.Is(err, unix.EEXIST):
			l.Report.Loaded = append(l.Report.Loaded, name)
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EIO):
			l.Report.Absent[name] = err.Error()
		default:
			return fresh, fmt.Errorf("load %s: %w", p, err)
		}
	}
	return fresh, nil
}

// devices reads the modaliases of a machine's devices from sysfs, remembering
// what it read: a device's modalias never changes, so each rescan reads only
// the devices that appeared since (a loaded bus driver brings new ones).
type devices struct {
	sysfs string
	// buses are the bus names the allow-listed modules have aliases for;
	// reading every bus costs ~0.6 s under TCG.
	buses []string
	seen  map[string]string
}

// scan returns the modalias of every device on the buses, every input device
// and the CPU (whose features select kvm_intel or kvm_amd).
func (d *devices) scan() []string {
	if d.seen == nil {
		d.seen = map[string]string{}
	}
	var dirs []string
	for _, bus := range d.buses {
		if bus == "cpu" || bus == "input" {
			continue
		}
		ents, _ := os.ReadDir(filepath.Join(d.sysfs, "bus", bus, "devices"))
		for _, e := range ents {
			if bus == "acpi" {
				// Reading an ACPI device's modalias costs ~15 ms under TCG; its
				// hardware ID is the device's name ("LNXPWRBN:00").
				if hid, _, ok := strings.Cut(e.Name(), ":"); ok {
					d.seen["acpi/"+e.Name()] = "acpi:" + hid + ":"
				}
				continue
			}
			dirs = append(dirs, filepath.Join(d.sysfs, "bus", bus, "devices", e.Name()))
		}
	}
	inputs, _ := filepath.Glob(filepath.Join(d.sysfs, "class/input/input*"))
	dirs = append(dirs, inputs...)
	dirs = append(dirs, filepath.Join(d.sysfs, "devices/system/cpu"))
	for _, dir := range dirs {
		if _, ok := d.seen[dir]; ok {
			continue
		}
		b, err := kernfs.Read(filepath.Join(dir, "modalias"))
		if err != nil {
			continue // no modalias, or the device went away while drivers loaded
		}
		d.seen[dir] = strings.TrimSpace(string(b))
	}
	out := make([]string, 0, len(d.seen))
	for _, a := range d.seen {
		if a != "" {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// moduleParams are the parameters modules load with: bonding would create
// a stray bond0 at load time; the network step makes the bonds it needs.
var moduleParams = map[string]string{"bonding": "max_bonds=0"}

func loadModule(p, params string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), params, 0)
}

// Ready prints the line that tells the world the host is up, with what the
// boot did and PID 1's resident memory (the service manager included).
type Ready struct{ Host *Host }

func (Ready) String() string { return "ready" }

// Run prints `hardvisor: ready version=… hostname=…`.
func (s Ready) Run() error {
	h := s.Host
	rss, _ := selfRSS("/proc/self/status")
	services := 0
	if h.Supervisor != nil {
		services = len(h.Supervisor.Status())
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "ready version=%s hostname=%s profile=%s modules=%d hardening=%d/%d services=%d boots=%d rss=%dKiB",
		h.Version, h.Config.Host.Hostname, h.Config.Profile, len(h.Modules.Loaded),
		passed(h.Hardening), applicable(h.Hardening), services, h.DataBoots, rss/1024)
	h.Logf("%s", b.String())
	return nil
}

// moduleDir is where the image carries the module index.
var moduleDir = "/" + path.Dir(kernel.LoadListPath)

// LoadModules loads more modules once the modules step's loads are done
// (after ModulesLoaded, before DisableModules), with the loader that step
// read the index into, and updates the host's report.
func (h *Host) LoadModules(names ...string) error {
	if h.modules == nil {
		return errors.New("load modules: the modules step has not run")
	}
	if _, err := h.modules.Load(names...); err != nil {
		return err
	}
	h.Modules = h.modules.Report
	return nil
}

// Sequence is the boot order of this image's PID 1.
func Sequence(h *Host, sp spawn.Spawner) []Step {
	steps := make([]Step, 0, len(EarlyMounts)+20)
	for _, m := range EarlyMounts {
		steps = append(steps, m)
	}
	return append(steps,
		Consoles{Host: h},
		LoadConfig{Host: h, Path: ConfigPath},
		Hostname{Host: h},
		VerifyCmdline{Host: h},
		ApplySysctls{Host: h, Table: HardeningSysctls},
		Modules{Host: h, Dir: moduleDir, Sysfs: "/sys"},
		SELinux{Host: h},
		ModulesLoaded{Host: h},
		Payload{Host: h},
		DataPartition{Host: h, Spawner: sp, LoadFS: func() error { return h.LoadModules(DataFSModule) }},
		SELinuxData{Host: h},
		Network{Host: h, Sysfs: "/sys"},
		DisableModules{Host: h},
		PowerEvents{Host: h},
		StatusServer{Host: h},
		Services{Host: h, Spawner: sp},
		HealthGate{Host: h},
		Ready{Host: h},
		FreeModules{Host: h, Dir: "/" + kernel.ModulesImageDir},
	)
}
