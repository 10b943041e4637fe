package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/api"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
)

// countingHost numbers its reports (Version "1", "2", …) and can hold a
// report back until released.
type countingHost struct {
	fakeHost
	n    atomic.Int32
	gate chan struct{} // when set, Status waits for it to close
}

func (c *countingHost) Status(ctx context.Context) (*status.Report, error) {
	if c.gate != nil {
		<-c.gate
	}
	r := sample
	r.Version = string(rune('0' + c.n.Add(1)))
	return &r, nil
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestStatusCache: PID 1 is asked for its report at most once per
// StatusMaxAge however many requests come, in parallel or in a row; an
// older report is answered while a fresh one is fetched behind it, up to
// StatusStaleLimit; a change drops it.
func TestStatusCache(t *testing.T) {
	p := newPKI(t)
	chains := map[pki.Role][][]*x509.Certificate{
		pki.RoleViewer:   {{p.certs[pki.RoleViewer]}},
		pki.RoleOperator: {{p.certs[pki.RoleOperator]}},
	}
	host := &countingHost{gate: make(chan struct{})}
	clock := &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h := api.New(api.Options{Host: host, Audit: openLog(t), Now: clock.Now})
	get := func(path string) string {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		req.TLS = &tls.ConnectionState{VerifiedChains: chains[pki.RoleViewer]}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if path != "/v1/status" {
			return w.Body.String()
		}
		var r status.Report
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r.Version
	}
	waitFor := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); host.n.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the host was asked %d times, want %d", host.n.Load(), n)
			}
		}
	}

	// Ten requests at once before there is any report: one fetch.
	var wg sync.WaitGroup
	got := make([]string, 10)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = get("/v1/status") }()
	}
	time.Sleep(20 * time.Millisecond)
	close(host.gate)
	wg.Wait()
	for i, v := range got {
		if v != "1" {
			t.Errorf("parallel request %d got report %q, want 1", i, v)
		}
	}
	// In a row, within StatusMaxAge, every view: still that one fetch.
	for range 100 {
		get("/v1/status")
	}
	get("/v1/services")
	get("/v1/hardening")
	if n := host.n.Load(); n != 1 {
		t.Errorf("host asked %d times for 113 requests within StatusMaxAge, want 1", n)
	}

	// Stale but within the limit: the old report at once, a new one behind.
	clock.Add(api.StatusMaxAge + time.Millisecond)
	if v := get("/v1/status"); v != "1" {
		t.Errorf("stale read got report %q, want the cached 1", v)
	}
	waitFor(2)
	for deadline := time.Now().Add(5 * time.Second); get("/v1/status") != "2"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background fetch's report is never answered")
		}
	}

	// Past the limit: the request waits for a fresh report.
	clock.Add(api.StatusStaleLimit + time.Second)
	if v := get("/v1/status"); v != "3" {
		t.Errorf("read past the stale limit got report %q, want a fresh 3", v)
	}

	// A change drops the report.
	req := httptest.NewRequest("POST", "/v1/services/libvirtd/restart", nil)
	req.TLS = &tls.ConnectionState{VerifiedChains: chains[pki.RoleOperator]}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 202 {
		t.Fatalf("restart: %d %s", w.Code, w.Body)
	}
	if v := get("/v1/status"); v != "4" {
		t.Errorf("read after a restart got report %q, want a fresh 4", v)
	}
}
