package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/manifest"
	"hardvisor.dev/hardvisor/init/network"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
	"hardvisor.dev/hardvisor/services/catalog"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
)

// apiRequests is how many status requests each server answers in a row.
const apiRequests = 10000

const apiPort, baselinePort = 8443, 8444

// benchAPI boots a host with the management API on and, as a config
// service in the management namespace, the baseline: a minimal Go HTTPS
// server with the same TLS answering mgmtd's own status reply. One client
// per server, each keeping its one connection alive, then sends
// apiRequests status requests to each, alternating, and the round trips'
// p50 and p99 are printed side by side with the errors counted, and
// mgmtd's resident memory after them.
func benchAPI(bin, src, work, cacheDir string) error {
	dir := filepath.Join(work, "api")
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{Name: "bench"})
	if err != nil {
		return err
	}
	srvCert, srvKey, err := ca.IssueServer("hv-bench", []string{"hv-bench"}, nil, 0)
	if err != nil {
		return err
	}
	clientCert, clientKey, err := ca.IssueClient("bench", pki.RoleViewer, 0)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"server.pem": srvCert, "server-key.pem": srvKey} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	// The program goes in at its build-host path, which must not be one the
	// host mounts over (the work directory is under /tmp).
	baseline := filepath.Join(src, "bin", "bench-baseline")
	b := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", baseline, "./qemu-tests/bench/baseline")
	b.Dir, b.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if o, err := b.CombinedOutput(); err != nil {
		return fmt.Errorf("build the baseline server: %w\n%s", err, o)
	}
	cfg := filepath.Join(dir, "api.yaml")
	yaml := fmt.Sprintf(`apiVersion: hardvisor.dev/v1
version: 0.1.0-api
management:
  api: {port: %d, clientCA: %s, serverCert: %s, serverKey: %s}
services:
  - {name: baseline, command: [%s, --port, "%d", --pki, %s, --netns, %s], optional: true}
`, apiPort, filepath.Join(dir, "ca", pki.CertFile), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"),
		baseline, baselinePort, catalog.PKIDir, network.NamespacePath)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return err
	}
	out := filepath.Join(dir, "out")
	if err := hardvisor(bin, src, "", "build", "-c", cfg, "-o", out, "--cache", cacheDir); err != nil {
		return err
	}
	m, err := manifest.Read(out)
	if err != nil {
		return err
	}
	vm, err := qemu.Start(context.Background(), nil, qemu.Options{Name: "bench-api", NoReboot: true,
		Kernel: filepath.Join(out, build.Kernel), Initrd: filepath.Join(out, build.Initramfs), Append: m.Cmdline,
		NICs:      []qemu.NIC{{HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:0-:%d", apiPort), fmt.Sprintf("tcp:127.0.0.1:0-:%d", baselinePort)}}},
		ExtraArgs: []string{"-device", "virtio-rng-pci"}})
	if err != nil {
		return err
	}
	defer vm.Close()
	if _, err := vm.Expect(regexp.MustCompile(`hardvisor: ready version=0\.1\.0-api`), 180*time.Second); err != nil {
		return err
	}
	tc, err := pki.ClientTLSConfig(clientCert, clientKey, ca.CertPEM, "hv-bench")
	if err != nil {
		return err
	}
	client := func() *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone(), MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	}
	mgmtd := server{name: "mgmtd", url: fmt.Sprintf("https://127.0.0.1:%d/v1/status", vm.HostPort(apiPort)), hc: client()}
	base := server{name: "baseline", url: fmt.Sprintf("https://127.0.0.1:%d/v1/status", vm.HostPort(baselinePort)), hc: client()}

	payload, err := mgmtd.get()
	if err != nil {
		return fmt.Errorf("mgmtd status: %w", err)
	}
	// The baseline is ready once started; it may not listen yet.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPut, base.url, bytes.NewReader(payload))
		resp, err := base.hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				break
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("set the baseline's payload: %w", err)
		}
	}
	for _, s := range []*server{&mgmtd, &base} { // warm up: handshakes, caches
		for range 50 {
			if _, err := s.get(); err != nil {
				return fmt.Errorf("%s warm-up: %w", s.name, err)
			}
		}
	}
	for range apiRequests {
		mgmtd.measure()
		base.measure()
	}
	p50, p99 := mgmtd.percentile(50), mgmtd.percentile(99)
	b50, b99 := base.percentile(50), base.percentile(99)
	fmt.Println()
	row("API status round trip p50", ms(p50), "minimal Go HTTPS server, same payload", ms(b50), ratio(p50, b50)+" (target <= 2.00)")
	row("API status round trip p99", ms(p99), "minimal Go HTTPS server, same payload", ms(b99), ratio(p99, b99)+" (target <= 2.00)")
	row(fmt.Sprintf("API %d requests in a row", apiRequests), fmt.Sprintf("%d err", mgmtd.errors), "baseline", fmt.Sprintf("%d err", base.errors),
		fmt.Sprintf("payload %d bytes", len(payload)))
	if mgmtd.errors > 0 {
		fmt.Printf("  first mgmtd error: %v\n", mgmtd.firstErr)
	}

	body, err := mgmtd.get()
	if err != nil {
		return fmt.Errorf("mgmtd status after the run: %w", err)
	}
	var r status.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	i := slices.IndexFunc(r.Services, func(s status.Service) bool { return s.Name == "mgmtd" })
	if i < 0 {
		return fmt.Errorf("no mgmtd in the report")
	}
	row(fmt.Sprintf("mgmtd RSS after %d requests", apiRequests), mb(int64(r.Services[i].RSS)), "target", "< 25.0 MB",
		fmt.Sprintf("uid %s, cgroup memory %s", r.Services[i].User(), mb(int64(r.Services[i].Memory))))
	return nil
}

// server is one side of the API benchmark: a status URL, a client holding
// one kept-alive connection to it, and the round trips measured.
type server struct {
	name     string
	url      string
	hc       *http.Client
	rtts     []time.Duration
	errors   int
	firstErr error
}

func (s *server) get() ([]byte, error) {
	resp, err := s.hc.Get(s.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, b)
	}
	return b, err
}

func (s *server) measure() {
	start := time.Now()
	if _, err := s.get(); err != nil {
		s.errors++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.rtts = append(s.rtts, time.Since(start))
}

func (s *server) percentile(p int) time.Duration {
	if len(s.rtts) == 0 {
		return 0
	}
	d := slices.Clone(s.rtts)
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
