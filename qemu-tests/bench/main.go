// Command bench prints hardvisor's headline numbers beside baselines measured in
// the same run on the same machine: cold and warm build time against u-root's own
// CLI building a busybox of the same commands, artifact sizes, and boot-to-ready
// against the floor of a trivial Go init on the same kernel, per initramfs
// compression. It prints numbers; it asserts nothing (`make test` does that).
//
// Run it from the repository root after `make bin/hardvisor` (make bench does).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/cmd/hardvisor/serve"
	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/disk"
	"hardvisor.dev/hardvisor/image/iso"
	"hardvisor.dev/hardvisor/image/manifest"
	"hardvisor.dev/hardvisor/image/plan"
	"hardvisor.dev/hardvisor/image/pxe"
	"hardvisor.dev/hardvisor/image/uki"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

const bootRuns = 3

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	only := flag.String("only", "", "run only this part of the bench: media (boot to ready per medium), api (the management API) or guests")
	flag.Parse()
	src, err := os.Getwd()
	if err != nil {
		return err
	}
	bin := filepath.Join(src, "bin", "hardvisor")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run `make bench`", bin)
	}
	work, err := os.MkdirTemp("", "hardvisor-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Printf("hardvisor bench: QEMU accel %s, %d boot runs each (median)\n\n", accel(), bootRuns)
	cacheDir := filepath.Join(work, "cache")
	switch *only {
	case "":
	case "api":
		fmt.Printf("%-34s %8s   %-40s %8s  %s\n", "measure", "hardvisor", "baseline", "value", "ratio")
		return benchAPI(bin, src, work, cacheDir)
	case "guests":
		fmt.Printf("%-34s %8s   %-40s %8s  %s\n", "measure", "hardvisor", "baseline", "value", "ratio")
		return benchGuests(bin, src, work, cacheDir)
	case "media":
		out := filepath.Join(work, "out")
		if err := hardvisor(bin, src, "", "build", "-o", out, "--cache", cacheDir); err != nil {
			return err
		}
		m, err := manifest.Read(out)
		if err != nil {
			return err
		}
		floorCPIO, err := qemu.BuildFloorInitramfs(work)
		if err != nil {
			return err
		}
		ready := regexp.MustCompile(`hardvisor: ready version=`)
		fmt.Printf("%-34s %8s   %-40s %8s  %s\n", "measure", "hardvisor", "baseline", "value", "ratio")
		// The kernel medium: direct boot, as the full bench's default row.
		kernel := filepath.Join(out, build.Kernel)
		floor, d, err := pairTime(qemu.Options{Kernel: kernel, Initrd: floorCPIO, Append: m.Cmdline}, regexp.MustCompile(regexp.QuoteMeta(qemu.FloorMarker)),
			qemu.Options{Kernel: kernel, Initrd: filepath.Join(out, build.Initramfs), Append: m.Cmdline}, ready)
		if err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		row("boot to ready, kernel (direct)", secs(d), "floor (target ratio <= 1.30)", secs(floor), ratio(d, floor))
		return benchMedia(work, out, m, floorCPIO, ready)
	default:
		return fmt.Errorf("-only %q: want media, api or guests", *only)
	}

	// Build: both sides start from an empty Go build cache, so "cold" means the
	// whole toolchain work, the same for each.
	out := filepath.Join(work, "out")
	cold, err := timed(func() error {
		return hardvisor(bin, src, freshGoCache(work), "build", "-o", out, "--cache", cacheDir)
	})
	if err != nil {
		return err
	}
	uroot, err := timed(func() error { return urootCLI(src, freshGoCache(work), filepath.Join(work, "uroot.cpio")) })
	if err != nil {
		return err
	}
	var warms []time.Duration
	for i := 0; i < 3; i++ {
		d, err := timed(func() error { return hardvisor(bin, src, "", "build", "-o", out, "--cache", cacheDir) })
		if err != nil {
			return err
		}
		warms = append(warms, d)
	}
	warm := median(warms)
	fmt.Printf("%-34s %8s   %-40s %8s  %s\n", "measure", "hardvisor", "baseline", "value", "ratio")
	row("build, cold (empty caches)", secs(cold), "u-root CLI, same commands (mkuimage)", secs(uroot), ratio(cold, uroot))
	row("build, warm (nothing changed)", secs(warm), "target", "< 3.0 s", "")

	m, err := manifest.Read(out)
	if err != nil {
		return err
	}
	for _, a := range m.Artifacts {
		if a.Name == build.UKI || a.Name == build.Initramfs || a.Name == build.Kernel {
			target := ""
			if a.Name == build.UKI {
				target = "< 15.0 MB"
			}
			row("size "+a.Name, mb(a.Size), "target", target, "")
		}
	}

	// Boot: the floor is a trivial static Go init on the same kernel with the
	// same command line, which prints a line and powers off.
	floorDir := filepath.Join(work, "floor")
	os.Mkdir(floorDir, 0o755)
	floorCPIO, err := qemu.BuildFloorInitramfs(floorDir)
	if err != nil {
		return err
	}
	cmdline := m.Cmdline
	floor, err := bootTime(filepath.Join(out, build.Kernel), floorCPIO, cmdline, regexp.MustCompile(regexp.QuoteMeta(qemu.FloorMarker)))
	if err != nil {
		return fmt.Errorf("floor boot: %w", err)
	}
	fmt.Println()
	row("boot floor (trivial Go init)", secs(floor), "", "", "")
	ready := regexp.MustCompile(`hardvisor: ready version=`)
	if err := benchMedia(work, out, m, floorCPIO, ready); err != nil {
		return err
	}
	if err := benchRSS(bin, src, work, cacheDir, out, cmdline); err != nil {
		return err
	}
	if err := benchAPI(bin, src, work, cacheDir); err != nil {
		return err
	}
	if err := benchGuests(bin, src, work, cacheDir); err != nil {
		return err
	}
	for _, comp := range []string{"zstd", "gzip", "xz", "none"} {
		dir := out
		if comp != m.Compression {
			dir = filepath.Join(work, "out-"+comp)
			if err := hardvisor(bin, src, "", "build", "-o", dir, "--cache", cacheDir, "--compression", comp); err != nil {
				return err
			}
		}
		cm, err := manifest.Read(dir)
		if err != nil {
			return err
		}
		ir, _ := cm.Artifact(build.Initramfs)
		d, err := bootTime(filepath.Join(dir, build.Kernel), filepath.Join(dir, build.Initramfs), cmdline, ready)
		if err != nil {
			return fmt.Errorf("boot %s: %w", comp, err)
		}
		label := "boot to ready, direct, " + comp
		if comp == m.Compression {
			label += " (default)"
		}
		row(label, secs(d), "floor (target ratio <= 1.30)", secs(floor), ratio(d, floor)+"  initramfs "+mb(ir.Size))
	}
	return nil
}

func row(what, value, baseline, bvalue, r string) {
	fmt.Printf("%-34s %8s   %-40s %8s  %s\n", what, value, baseline, bvalue, r)
}

func accel() string {
	if os.Getenv("HARDVISOR_KVM") == "1" {
		return "kvm"
	}
	return "tcg"
}

func freshGoCache(work string) string {
	d, err := os.MkdirTemp(work, "gocache-")
	if err != nil {
		panic(err)
	}
	return d
}

func hardvisor(bin, src, gocache string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Dir = src
	cmd.Env = os.Environ()
	if gocache != "" {
		cmd.Env = append(cmd.Env, "GOCACHE="+gocache)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hardvisor %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// urootCLI builds the same Go commands into a busybox initramfs with u-root's
// own command line tool (github.com/u-root/mkuimage/cmd/mkuimage, a tool in go.mod).
func urootCLI(src, gocache, out string) error {
	// Compile the tool first, outside the timed build's Go cache.
	tool := filepath.Join(filepath.Dir(out), "mkuimage")
	b := exec.Command("go", "build", "-o", tool, "github.com/u-root/mkuimage/cmd/mkuimage")
	b.Dir = src
	if o, err := b.CombinedOutput(); err != nil {
		return fmt.Errorf("build mkuimage: %w\n%s", err, o)
	}
	args := []string{"-base=/dev/null", "-defaultsh=", "-initcmd=" + filepath.Base(plan.InitPackage), "-o", out, plan.InitPackage}
	cmd := exec.Command(tool, args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOCACHE="+gocache, "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkuimage %s: %w\n%s", strings.Join(args, " "), err, o)
	}
	return nil
}

// benchMedia measures boot-to-ready per medium beside that medium's floor:
// the same firmware and medium booting a UKI of the floor init (the same
// stub, kernel and command line), which prints a line and powers off.
func benchMedia(work, out string, m *manifest.Manifest, floorCPIO string, ready *regexp.Regexp) error {
	fdir := filepath.Join(work, "floor-media")
	if err := os.MkdirAll(fdir, 0o755); err != nil {
		return err
	}
	floorUKI := filepath.Join(fdir, "floor.efi")
	if err := uki.Build(uki.Inputs{Stub: uki.DefaultStub, Kernel: filepath.Join(out, build.Kernel), Initramfs: floorCPIO,
		Cmdline: m.Cmdline, OSRelease: []byte("ID=floor\nVERSION_ID=0.0.0\n")}, floorUKI, fdir); err != nil {
		return err
	}
	floorImg, floorISO := filepath.Join(fdir, "floor.img"), filepath.Join(fdir, "floor.iso")
	if err := disk.Write(floorImg, disk.Inputs{Version: "0.0.0", UKI: floorUKI, Seed: "floor"}); err != nil {
		return err
	}
	if err := iso.Write(floorISO, fdir, iso.Inputs{UKI: floorUKI}); err != nil {
		return err
	}
	if err := pxe.Write(fdir, pxe.Inputs{Kernel: filepath.Join(out, build.Kernel), Initramfs: floorCPIO, UKI: floorUKI, Cmdline: m.Cmdline}); err != nil {
		return err
	}
	floorMark := regexp.MustCompile(regexp.QuoteMeta(qemu.FloorMarker))
	uefi := &qemu.Firmware{}
	type medium struct {
		name        string
		floor, ours qemu.Options
	}
	media := []medium{
		{"usb (OVMF, virtio disk)",
			qemu.Options{Firmware: uefi, Disks: []qemu.Disk{{Path: floorImg, Snapshot: true, BootIndex: 1}}},
			qemu.Options{Firmware: uefi, Disks: []qemu.Disk{{Path: filepath.Join(out, build.DiskImage), Snapshot: true, BootIndex: 1}}}},
		{"iso (OVMF, CD-ROM)",
			qemu.Options{Firmware: uefi, Disks: []qemu.Disk{{Path: floorISO, Interface: qemu.CDROM, BootIndex: 1}}},
			qemu.Options{Firmware: uefi, Disks: []qemu.Disk{{Path: filepath.Join(out, build.ISO), Interface: qemu.CDROM, BootIndex: 1}}}},
	}
	// PXE: SeaBIOS + iPXE fetching boot.ipxe over HTTP from an in-process
	// server, one per side.
	var pxeOpts [2]qemu.Options
	for i, dir := range []string{filepath.Join(fdir, pxe.Dir), filepath.Join(out, pxe.Dir)} {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return err
		}
		defer root.Close()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go serve.Serve(ctx, l, serve.Handler(root, slog.New(slog.NewTextHandler(io.Discard, nil))))
		url := fmt.Sprintf("http://10.0.2.2:%d/%s", l.Addr().(*net.TCPAddr).Port, pxe.Script)
		pxeOpts[i] = qemu.Options{NICs: []qemu.NIC{{BootFile: url, BootIndex: 1}}}
	}
	media = append(media, medium{"pxe (SeaBIOS+iPXE, HTTP)", pxeOpts[0], pxeOpts[1]})
	for _, md := range media {
		f, d, err := pairTime(md.floor, floorMark, md.ours, ready)
		if err != nil {
			return fmt.Errorf("%s: %w", md.name, err)
		}
		row("boot to ready, "+md.name, secs(d), "its floor (target ratio <= 1.30)", secs(f), ratio(d, f))
	}
	return nil
}

// rssServices is a config with host services that run and idle, to show
// what the service manager costs PID 1 with services to watch.
const rssServices = `apiVersion: hardvisor.dev/v1
version: 0.1.0-rss
services:
  - {name: a, command: [/bin/sleep, "100000"]}
  - {name: b, command: [/bin/sleep, "100000"], requires: [a]}
  - {name: c, command: [/bin/sleep, "100000"], ready: {file: /proc/self}}
  - {name: d, command: [/bin/sleep, "100000"], health: {exec: [/bin/true], interval: 1s}}
  - {name: e, command: [/bin/sh, -c, "exit 1"], restart: on-failure, optional: true}
`

// benchRSS reads PID 1's resident memory (the service manager runs in it)
// from the ready line: the default image, and one with five services.
func benchRSS(bin, src, work, cacheDir, out, cmdline string) error {
	cfg := filepath.Join(work, "rss.yaml")
	if err := os.WriteFile(cfg, []byte(rssServices), 0o644); err != nil {
		return err
	}
	svcOut := filepath.Join(work, "out-rss")
	if err := hardvisor(bin, src, "", "build", "-c", cfg, "-o", svcOut, "--cache", cacheDir); err != nil {
		return err
	}
	rss := regexp.MustCompile(`hardvisor: ready version=.* services=(\d+) .*rss=(\d+)KiB`)
	for _, dir := range []string{out, svcOut} {
		var kib []int
		for i := 0; i < bootRuns; i++ {
			vm, err := qemu.Start(context.Background(), nil, qemu.Options{Name: "bench-rss", NoReboot: true,
				Kernel: filepath.Join(dir, build.Kernel), Initrd: filepath.Join(dir, build.Initramfs), Append: cmdline})
			if err != nil {
				return err
			}
			m, err := vm.Expect(rss, 180*time.Second)
			vm.Close()
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(m[2])
			kib = append(kib, n)
			if i == bootRuns-1 {
				sort.Ints(kib)
				row("PID 1 + service manager RSS, "+m[1]+" svc", fmt.Sprintf("%.1f MB", float64(kib[len(kib)/2])*1024/1e6), "target", "< 20.0 MB", "")
			}
		}
	}
	return nil
}

// pairTime boots a floor and the artifact bootRuns times each, one after
// the other in turn, and returns both medians: a machine that slows down or
// speeds up during the bench then weighs on both sides alike, where timing
// all floor boots first and all of ours after would put the drift into the
// ratio.
func pairTime(floor qemu.Options, floorMark *regexp.Regexp, ours qemu.Options, ready *regexp.Regexp) (f, d time.Duration, err error) {
	var fs, ds []time.Duration
	for i := 0; i < bootRuns; i++ {
		fd, err := bootOnce(floor, floorMark)
		if err != nil {
			return 0, 0, fmt.Errorf("floor: %w", err)
		}
		od, err := bootOnce(ours, ready)
		if err != nil {
			return 0, 0, err
		}
		fs, ds = append(fs, fd), append(ds, od)
	}
	return median(fs), median(ds), nil
}

// bootOnce boots opts and returns the time from QEMU's start to the marker.
func bootOnce(opts qemu.Options, marker *regexp.Regexp) (time.Duration, error) {
	opts.Name, opts.NoReboot = "bench", true
	vm, err := qemu.Start(context.Background(), nil, opts)
	if err != nil {
		return 0, err
	}
	defer vm.Close()
	_, at, err := vm.ExpectAt(marker, 180*time.Second)
	return at, err
}

// bootTime boots kernel+initrd directly bootRuns times and returns the median
// time from QEMU's start to the marker line.
func bootTime(kernel, initrd, cmdline string, marker *regexp.Regexp) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < bootRuns; i++ {
		d, err := bootOnce(qemu.Options{Kernel: kernel, Initrd: initrd, Append: cmdline}, marker)
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	return median(ds), nil
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		panic(errors.New("median of nothing"))
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func mb(n int64) string           { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
func ratio(a, b time.Duration) string {
	return fmt.Sprintf("%.2fx", a.Seconds()/b.Seconds())
}
