// Package cli is the hardvisor command line: each subcommand parses its flags and
// calls into the packages that do the work. main only calls Execute.
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/hypervisor"
	"hardvisor.dev/hardvisor/image/initramfs"
)

// UsageError is a mistake in the command line (exit code 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ExitCode maps an error from Execute to the process exit code.
func ExitCode(err error) int {
	var u *UsageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `usage: hardvisor COMMAND [flags]

commands:
  build     build the boot image from a config (default: the embedded one)
  validate  check a config file and print every problem in it
  config    print the embedded default config
  serve     serve the PXE bundle (default out/pxe) over HTTP for iPXE and UEFI HTTP boot
  run       boot the built artifacts in QEMU here (--media kernel|usb|iso|pxe)
  flash     write the disk image to a USB stick or disk, then verify it (flash IMAGE DEVICE)
  pki       the installation's CA and the management API's certificates (pki init DIR, pki issue)
  audit     check a management audit log's hash chain (audit verify FILE)
  ctl       talk to a host's management API (status, services, logs, restart, network, guests, audit, reboot, poweroff)
`

// Execute runs the hardvisor command line with args (without the program name).
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &UsageError{Msg: "no command given"}
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:], stdout, stderr)
	case "validate":
		return runValidate(args[1:], stdout, stderr)
	case "config":
		_, err := stdout.Write(config.Default())
		return err
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "run":
		return runRun(ctx, args[1:], stdout, stderr)
	case "flash":
		return runFlash(args[1:], stdout, stderr)
	case "pki":
		return runPKI(args[1:], stdout, stderr)
	case "audit":
		return runAudit(args[1:], stdout, stderr)
	case "ctl":
		return runCtl(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &UsageError{Msg: fmt.Sprintf("unknown command %q", args[0])}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &UsageError{Msg: err.Error()}
	}
	return nil
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("build", stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded default config)")
	out := fs.String("o", "out", "output directory")
	profile := fs.String("profile", "", "override the config's profile: production or debug")
	kernelPath := fs.String("kernel", "", "kernel image (default: newest installed Debian linux-image package)")
	compression := fs.String("compression", string(initramfs.Zstd), "initramfs compression: zstd, gzip, xz or none")
	src := fs.String("src", "", "hardvisor source tree to compile PID 1 from (default: found from the working directory)")
	cacheDir := fs.String("cache", "", "build cache directory (default: $HARDVISOR_CACHE or ~/.cache/hardvisor)")
	signKey := fs.String("sign-key", "", "PEM private key (unencrypted, RSA) that signs systemd-boot and the UKI for Secure Boot")
	signCert := fs.String("sign-cert", "", "PEM certificate of --sign-key (enrolled in the firmware's db)")
	payload := fs.String("payload", hypervisor.Squashfs, "with guests: QEMU and libvirt in a squashfs PID 1 mounts, or left in the initramfs ("+strings.Join(hypervisor.Layouts, " or ")+")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !slices.Contains(hypervisor.Layouts, *payload) {
		return &UsageError{Msg: fmt.Sprintf("--payload %q: want %s", *payload, strings.Join(hypervisor.Layouts, " or "))}
	}
	if fs.NArg() != 0 {
		return &UsageError{Msg: fmt.Sprintf("build: unexpected argument %q", fs.Arg(0))}
	}
	comp, err := initramfs.ParseCompression(*compression)
	if err != nil {
		return &UsageError{Msg: "--compression: " + err.Error()}
	}
	if *src == "" {
		if *src, err = findSource(); err != nil {
			return err
		}
	}
	c := cache.Cache{Root: *cacheDir}
	if *cacheDir == "" {
		if c, err = cache.Default(); err != nil {
			return err
		}
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	res, err := build.Run(build.Options{ConfigPath: *cfgPath, OutDir: *out, Profile: *profile, KernelPath: *kernelPath,
		SourceDir: *src, Cache: c, Compression: comp, Payload: *payload, Epoch: epoch, SignKey: *signKey, SignCert: *signCert, Progress: stderr})
	if err != nil {
		return err
	}
	m := res.Manifest
	for _, a := range m.Artifacts {
		fmt.Fprintf(stdout, "%-16s %10d  %s\n", a.Name, a.Size, a.SHA256)
	}
	return nil
}

func sourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
	}
	return v, nil
}

// findSource walks up from the working directory to the hardvisor module root.
func findSource() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isHardvisorModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("PID 1 is compiled from the hardvisor source tree: run inside a checkout or pass --src DIR")
		}
		dir = parent
	}
}

func isHardvisorModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == "hardvisor.dev/hardvisor"
		}
	}
	return false
}

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &UsageError{Msg: "usage: hardvisor validate FILE"}
	}
	c, err := config.Load(fs.Arg(0))
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e)
			}
			return fmt.Errorf("%s: %d problem(s)", fs.Arg(0), len(errs))
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: valid (version %s, profile %s)\n", fs.Arg(0), c.Version, c.Profile)
	return nil
}
