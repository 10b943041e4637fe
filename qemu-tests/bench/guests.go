package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/hypervisor"
	"hardvisor.dev/hardvisor/image/manifest"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/qemu-tests/testguest"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
)

// guestStarts is how many times each side starts the guest.
const guestStarts = 3

// guestsBench is a host with guests, none started at boot: its memory at
// ready is the host's own with the hypervisor payload in place.
const guestsBench = `apiVersion: hardvisor.dev/v1
version: 0.1.0-guests
profile: debug
resources:
  reserve: {memory: 512Mi, cpus: 1}
management:
  api: {port: %d, clientCA: %s, serverCert: %s, serverKey: %s}
networks:
  - {name: lab, uplinks: [{mac: "52:54:00:12:34:57"}]}
templates:
  - {name: tiny, cpus: 1, memory: 16Mi, disk: 1Mi}
guests:
  - {name: bench, template: tiny, network: lab, image: bench.img}
`

// benchGuests measures a host with guests: the UKI with QEMU and libvirt
// beside its floor, the kernel plus everything else the UKI carries (PID 1,
// modules, QEMU, libvirt) compressed as one with the best of zstd's best
// level and xz; the host's memory in use at ready with no guest
// running, for each payload layout; and starting a tiny guest through the
// management API (vmm, libvirt, sVirt, cgroups, filter) beside starting it
// with a bare QEMU command in the same VM, each timed from the request to
// the guest's marker line.
func benchGuests(bin, src, work, cacheDir string) error {
	dir := filepath.Join(work, "guests")
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{Name: "bench"})
	if err != nil {
		return err
	}
	srvCert, srvKey, err := ca.IssueServer("hv-bench", []string{"hv-bench"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		return err
	}
	clientCert, clientKey, err := ca.IssueClient("bench", pki.RoleOperator, 0)
	if err != nil {
		return err
	}
	img, err := testguest.Guest{Name: "bench"}.Image()
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"server.pem": srvCert, "server-key.pem": srvKey, "bench.img": img} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	cfg := filepath.Join(dir, "guests.yaml")
	yaml := fmt.Sprintf(guestsBench, apiPort, filepath.Join(dir, "ca", pki.CertFile), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return err
	}
	outs := map[string]string{}
	for _, layout := range hypervisor.Layouts {
		outs[layout] = filepath.Join(dir, "out-"+layout)
		if err := hardvisor(bin, src, "", "build", "-c", cfg, "-o", outs[layout], "--cache", cacheDir, "--payload", layout); err != nil {
			return err
		}
	}

	// Size.
	m, err := manifest.Read(outs[hypervisor.Squashfs])
	if err != nil {
		return err
	}
	uki, _ := m.Artifact(build.UKI)
	kernel, _ := m.Artifact(build.Kernel)
	best, which, err := contentFloor(outs[hypervisor.Initramfs])
	if err != nil {
		return err
	}
	floor := kernel.Size + best
	fmt.Println()
	row("size UKI with QEMU + libvirt", mb(uki.Size), "kernel + content "+which+" (target <= 1.15x)", mb(floor),
		fmt.Sprintf("%.2fx", float64(uki.Size)/float64(floor)))

	// Memory at ready, and the guest's start.
	for _, layout := range hypervisor.Layouts {
		if err := benchGuestHost(layout, outs[layout], m.Cmdline, dir, ca, clientCert, clientKey); err != nil {
			return fmt.Errorf("guests, payload %s: %w", layout, err)
		}
	}
	return nil
}

// contentFloor gives what the initramfs of the build in plainOut (built
// with the payload left in its archive: one cpio of everything the UKI
// carries beside the kernel) takes compressed with the best of zstd's best
// level and xz, and which one that is.
func contentFloor(plainOut string) (int64, string, error) {
	f, err := os.Open(filepath.Join(plainOut, build.Initramfs))
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return 0, "", err
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		return 0, "", fmt.Errorf("decompress %s: %w", f.Name(), err)
	}
	size := func(newW func(io.Writer) (io.WriteCloser, error)) (int64, error) {
		var out bytes.Buffer
		w, err := newW(&out)
		if err != nil {
			return 0, err
		}
		if _, err := w.Write(raw); err != nil {
			return 0, err
		}
		err = w.Close()
		return int64(out.Len()), err
	}
	zs, err := size(func(w io.Writer) (io.WriteCloser, error) {
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
	})
	if err != nil {
		return 0, "", err
	}
	xs, err := size(func(w io.Writer) (io.WriteCloser, error) {
		return xz.WriterConfig{DictCap: 64 << 20}.NewWriter(w)
	})
	if err != nil {
		return 0, "", err
	}
	fmt.Printf("%-34s %8s   zstd best %s, xz %s\n", "image content (cpio)", mb(int64(len(raw))), mb(zs), mb(xs))
	if xs < zs {
		return xs, "xz", nil
	}
	return zs, "zstd", nil
}

// benchGuestHost boots the build in out and prints its memory in use at
// ready (neither free nor reclaimable) and, for the default layout, the guest's
// start through the API beside a bare QEMU.
func benchGuestHost(layout, out, cmdline, dir string, ca *pki.CA, cert, key []byte) error {
	data := filepath.Join(dir, "data-"+layout+".img")
	if err := qemu.DataDisk(data, 256<<20); err != nil {
		return err
	}
	vm, err := qemu.Start(context.Background(), nil, qemu.Options{Name: "bench-guests-" + layout, NoReboot: true,
		Kernel: filepath.Join(out, build.Kernel), Initrd: filepath.Join(out, build.Initramfs), Append: cmdline,
		Memory: 1536, CPUs: 2, CPU: "qemu64,-svm,-vmx",
		Disks:     []qemu.Disk{{Path: data}},
		NICs:      []qemu.NIC{{HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:0-:%d", apiPort)}}, {}},
		ExtraArgs: []string{"-device", "virtio-rng-pci"}})
	if err != nil {
		return err
	}
	defer vm.Close()
	if _, err := vm.Expect(regexp.MustCompile(`hardvisor: ready version=0\.1\.0-guests`), 5*time.Minute); err != nil {
		return err
	}
	if _, err := vm.Expect(regexp.MustCompile(`hardvisor: debug shell on`), time.Minute); err != nil {
		return err
	}
	if err := vm.Send("cat /proc/meminfo\n"); err != nil {
		return err
	}
	if _, err := vm.Expect(regexp.MustCompile(`^Percpu:\s+\d+ kB`), time.Minute); err != nil {
		return err
	}
	info := map[string]int64{}
	// The first line follows the shell's prompt.
	for _, m := range regexp.MustCompile(`([\w()]+):\s+(\d+) kB`).FindAllStringSubmatch(vm.Console(), -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		info[m[1]] = n * 1024
	}
	// In use: every page that is neither free nor reclaimable (the file
	// cache and reclaimable slab are given back under pressure). The
	// in-memory root file system (tmpfs) counts in full.
	reclaimable := info["Active(file)"] + info["Inactive(file)"] + info["SReclaimable"]
	inUse := info["MemTotal"] - info["MemFree"] - reclaimable
	kernel := info["KernelStack"] + info["PageTables"] + info["VmallocUsed"] + info["Percpu"]
	row("host memory in use at ready, "+layout, mb(inUse), "target (no guest running)", "< 128.0 MB",
		fmt.Sprintf("of it tmpfs %s, anon %s, unreclaimable slab %s, stacks+page tables+vmalloc+percpu %s, other kernel %s",
			mb(info["Shmem"]), mb(info["AnonPages"]), mb(info["SUnreclaim"]), mb(kernel),
			mb(inUse-info["Shmem"]-info["AnonPages"]-info["SUnreclaim"]-kernel)))
	// MemAvailable also holds back the kernel's free-page reserve (the
	// watermarks, which khugepaged raises whenever huge pages are on).
	row("  MemTotal - MemAvailable, "+layout, mb(info["MemTotal"]-info["MemAvailable"]), "free but reserved, and reclaimable", "",
		fmt.Sprintf("free %s, reclaimable %s", mb(info["MemFree"]), mb(reclaimable)))
	if layout != hypervisor.Squashfs {
		return nil
	}

	tc, err := pki.ClientTLSConfig(cert, key, ca.CertPEM, "127.0.0.1")
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}
	base := fmt.Sprintf("https://127.0.0.1:%d/v1/guests/bench", vm.HostPort(apiPort))
	post := func(verb string) error {
		resp, err := hc.Post(base+"/"+verb, "application/json", nil)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("%s: %s %s", verb, resp.Status, b)
		}
		return nil
	}
	up := testguest.UpLine("bench")
	consoleHas := func(n int) (bool, error) {
		resp, err := hc.Get(base + "/console")
		if err != nil {
			return false, err
		}
		var c struct {
			Console string `json:"console"`
		}
		err = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		return strings.Count(c.Console, up) >= n, err
	}
	viaAPI := func(n int) (time.Duration, error) {
		start := time.Now()
		if err := post("start"); err != nil {
			return 0, err
		}
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			ok, err := consoleHas(n)
			if err != nil {
				return 0, err
			}
			if ok {
				d := time.Since(start)
				return d, post("stop")
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("no %q in the guest's console", up)
			}
		}
	}
	bare := func() (time.Duration, error) {
		start := time.Now()
		if err := vm.Send(hypervisor.QEMU + " -accel tcg -machine pc -m 16 -nodefaults -no-user-config -display none -vga none " +
			"-serial mon:stdio -drive file=/var/lib/hardvisor/guests/bench/disk.img,format=raw,if=virtio,readonly=on\n"); err != nil {
			return 0, err
		}
		if _, err := vm.Expect(regexp.MustCompile(regexp.QuoteMeta(up)), 3*time.Minute); err != nil {
			return 0, err
		}
		d := time.Since(start)
		// Ctrl-A x quits QEMU through its stdio mux; then the shell's
		// prompt is back.
		if err := vm.Send("\x01x"); err != nil {
			return 0, err
		}
		if _, err := vm.Expect(regexp.MustCompile(`QEMU: Terminated`), time.Minute); err != nil {
			return 0, err
		}
		return d, nil
	}
	// A first start through the API makes the guest's disk; neither side
	// is timed on it.
	if _, err := viaAPI(1); err != nil {
		return err
	}
	var apiTimes, bareTimes []time.Duration
	for i := 0; i < guestStarts; i++ {
		d, err := viaAPI(i + 2)
		if err != nil {
			return err
		}
		apiTimes = append(apiTimes, d)
		if d, err = bare(); err != nil {
			return err
		}
		bareTimes = append(bareTimes, d)
	}
	a2, b2 := median(apiTimes), median(bareTimes)
	row("guest start through the API", secs(a2), "bare QEMU in the same VM (target <= 1.20x)", secs(b2), ratio(a2, b2))
	return nil
}
