// Package plan turns a validated config into everything the build stages need:
// which kernel, which modules, which Go commands, the one canonical kernel command
// line and the os-release of the image. It reads the build host but writes nothing.
package plan

import (
	"fmt"
	"strings"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/kernel"
	"hardvisor.dev/hardvisor/services/catalog"
	"hardvisor.dev/hardvisor/services/supervise"
)

// InitPackage is PID 1's Go package; its command name is what /init links to.
const InitPackage = "hardvisor.dev/hardvisor/init/hvinit"

// MgmtdPackage is the management API service, in every image whose config
// turns the API on (management.api.clientCA).
const MgmtdPackage = "hardvisor.dev/hardvisor/services/mgmtd"

// VmmdPackage runs the config's guests, in every image whose config has any.
const VmmdPackage = "hardvisor.dev/hardvisor/services/vmmd"

// RunconPackage runs a command in an SELinux context; the debug profile
// carries it so a test (or an admin) can act as a guest would.
const RunconPackage = "hardvisor.dev/hardvisor/init/runcon"

// StatusPackage prints the host's status report; the debug profile carries
// it for the console (production has no shell to run it from).
const StatusPackage = "hardvisor.dev/hardvisor/services/hvstatus"

// DebugPackages are the u-root core commands the debug profile adds, with gosh
// as the interactive shell on the serial console. Each must be a tool in go.mod.
var DebugPackages = corePackages(
	"cat", "chmod", "cp", "dd", "df", "dmesg", "echo", "find", "free", "grep", "gosh",
	"head", "hexdump", "hostname", "id", "ip", "kill", "ln", "ls", "lsmod", "mkdir",
	"mount", "mv", "netstat", "pci", "ps", "pwd", "readlink", "rm", "sleep", "sync",
	"tail", "uname", "umount", "uptime", "wc", "which")

// DebugTags build gosh's plain line editor: its default one (bubbline) queries
// the terminal, which a serial console does not answer.
var DebugTags = []string{"goshsmall"}

func corePackages(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "github.com/u-root/u-root/cmds/core/" + n
	}
	return out
}

// HardeningCmdline is the kernel's share of the hardening: KSPP-recommended
// arguments that every hardvisor image boots with.
var HardeningCmdline = []string{
	"module.sig_enforce=1",
	"slab_nomerge",
	"init_on_alloc=1",
	"init_on_free=1",
	"page_alloc.shuffle=1",
	"randomize_kstack_offset=on",
	"vsyscall=none",
	"debugfs=off",
	"pti=on",
	"oops=panic",
	"panic=10",
}

// Options are the build host facts and overrides that shape a plan.
type Options struct {
	// Profile overrides the config's profile when set.
	Profile string
	// Kernel names a kernel image; empty picks the newest installed Debian kernel package.
	Kernel kernel.FindOptions
}

// Plan is a build, decided.
type Plan struct {
	Config  *config.Config
	Kernel  *kernel.Kernel
	Modules *kernel.ModuleSet
	// Unused are the modules of kernel.modules the image leaves out: only
	// a feature this config lacks (guests, guest networks) would use them.
	Unused   []string
	Packages []string
	// Tags are the Go build tags of the compiled commands.
	Tags    []string
	Cmdline string
	// Services are the host's services, built-in and from the config, checked.
	Services []supervise.Spec
}

// New plans the build of cfg.
func New(cfg *config.Config, opts Options) (*Plan, error) {
	if opts.Profile != "" {
		if opts.Profile != "production" && opts.Profile != "debug" {
			return nil, fmt.Errorf("--profile %q: want production or debug", opts.Profile)
		}
		cfg.Profile = opts.Profile
	}
	if err := checkFeatureModules(cfg); err != nil {
		return nil, err
	}
	services, err := catalog.Check(cfg)
	if err != nil {
		return nil, err
	}
	k, err := kernel.Find(opts.Kernel)
	if err != nil {
		return nil, err
	}
	keep, unused := cfg.ImageModules()
	mods, err := k.Modules(keep)
	if err != nil {
		return nil, fmt.Errorf("kernel.modules: %w", err)
	}
	pkgs := []string{InitPackage}
	if api := cfg.Management.API; api.ClientCA != "" {
		if api.ServerCert == "" || api.ServerKey == "" {
			return nil, fmt.Errorf("management.api: clientCA is set, so serverCert and serverKey are required (make them with hardvisor pki issue --server)")
		}
		pkgs = append(pkgs, MgmtdPackage)
	}
	if len(cfg.Guests) > 0 {
		pkgs = append(pkgs, VmmdPackage)
	}
	var tags []string
	if cfg.Profile == "debug" {
		pkgs = append(pkgs, StatusPackage, RunconPackage)
		pkgs = append(pkgs, DebugPackages...)
		tags = DebugTags
	}
	return &Plan{Config: cfg, Kernel: k, Modules: mods, Unused: unused, Packages: pkgs, Tags: tags, Cmdline: Cmdline(cfg), Services: services}, nil
}

// Cmdline is the canonical kernel command line of an image built from cfg: the
// consoles, the hardening arguments and the config's extra arguments. The UKI
// carries it; direct and network boot pass the same string.
func Cmdline(cfg *config.Config) string {
	args := []string{"console=tty0", "console=" + cfg.Host.Console + ",115200", "quiet", "rdinit=/init"}
	args = append(args, "lockdown="+cfg.Security.Lockdown, "security=selinux")
	args = append(args, HardeningCmdline...)
	// Huge pages only where a program asks (QEMU does, for guest RAM):
	// with "always" the Go services' and libvirtd's heaps take 2 MiB pages
	// they mostly leave empty.
	args = append(args, "transparent_hugepage=madvise")
	args = append(args, cfg.Kernel.Cmdline...)
	return strings.Join(args, " ")
}

// OSRelease is the image's os-release(5), which systemd-boot shows in its menu.
func OSRelease(cfg *config.Config) []byte {
	return []byte(fmt.Sprintf("NAME=hardvisor\nID=hardvisor\nPRETTY_NAME=\"hardvisor %s\"\nVERSION_ID=%s\nIMAGE_ID=hardvisor\nIMAGE_VERSION=%s\nVARIANT_ID=%s\nHOME_URL=https://hardvisor.dev/\n",
		cfg.Version, cfg.Version, cfg.Version, cfg.Profile))
}

// checkFeatureModules refuses a config whose features need a module that
// kernel.modules leaves out of the image: the host could not load it at boot.
func checkFeatureModules(cfg *config.Config) error {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	have := map[string]bool{}
	for _, m := range cfg.Kernel.Modules {
		have[norm(m)] = true
	}
	var missing []string
	for _, m := range cfg.FeatureModules() {
		if !have[norm(m)] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel.modules: the host's firewall and the config's networks and guests need %s; add them to the list", strings.Join(missing, ", "))
	}
	return nil
}
