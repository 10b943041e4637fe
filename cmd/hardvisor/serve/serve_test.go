package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects JSON log lines; the handler may log from several
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) records(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// fixture is a served directory with a file, a subdirectory, a symbolic
// link inside it and two that point outside, next to a secret outside it.
func fixture(t *testing.T) (*httptest.Server, *logBuffer) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	files := map[string]string{
		"root/boot.ipxe":       "#!ipxe\n",
		"root/sub/vmlinuz":     "0123456789abcdef",
		"secret":               "outside",
		"root/sub/.hidden.txt": "dot files are files",
	}
	for name, content := range files {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"root/inside":   "sub/vmlinuz",
		"root/escape":   "../secret",
		"root/absolute": filepath.Join(base, "secret"),
		"root/sub/up":   "../../secret",
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	logs := &logBuffer{}
	srv := httptest.NewServer(Handler(r, slog.New(slog.NewJSONHandler(logs, nil))))
	t.Cleanup(srv.Close)
	return srv, logs
}

// do sends a request with a raw (uncleaned) path, as a hostile client would.
func do(t *testing.T, srv *httptest.Server, method, path string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestFiles(t *testing.T) {
	srv, _ := fixture(t)
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/boot.ipxe", 200, "#!ipxe\n"},
		{"/sub/vmlinuz", 200, "0123456789abcdef"},
		{"/sub/.hidden.txt", 200, "dot files are files"},
		{"/inside", 200, "0123456789abcdef"}, // a link within the root is followed
		{"/missing", 404, "not found\n"},
		{"/", 404, "404 page not found\n"}, // no listings
		{"/sub", 404, "404 page not found\n"},
		{"/sub/", 400, "invalid path\n"},
	} {
		status, _, body := do(t, srv, "GET", c.path, nil)
		if status != c.status || body != c.body {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, status, body, c.status, c.body)
		}
	}
}

func TestEscapes(t *testing.T) {
	srv, _ := fixture(t)
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/../secret", 400},
		{"/sub/../../secret", 400},
		{"/sub/../boot.ipxe", 400}, // `..` is refused even when it stays inside
		{"/%2e%2e/secret", 400},
		{"/..%2fsecret", 400},
		{`/..\secret`, 400},
		{"//etc/passwd", 404}, // parsed as host "etc", path /passwd
		{"/escape", 403},
		{"/absolute", 403},
		{"/sub/up", 403},
	} {
		status, _, body := do(t, srv, "GET", c.path, nil)
		if status != c.status {
			t.Errorf("GET %s = %d %q, want %d", c.path, status, body, c.status)
		}
		if strings.Contains(body, "outside") {
			t.Errorf("GET %s served the file outside the root", c.path)
		}
	}
	// Absolute form of the request target, as a proxy would send it.
	status, _, body := do(t, srv, "GET", srv.URL+"/../secret", nil)
	if status != 400 || strings.Contains(body, "outside") {
		t.Errorf("GET absolute-form /../secret = %d %q, want 400", status, body)
	}
}

func TestMethods(t *testing.T) {
	srv, _ := fixture(t)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		status, h, _ := do(t, srv, m, "/boot.ipxe", nil)
		if status != 405 || h.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s = %d Allow %q, want 405 Allow \"GET, HEAD\"", m, status, h.Get("Allow"))
		}
	}
	status, h, body := do(t, srv, "HEAD", "/sub/vmlinuz", nil)
	if status != 200 || body != "" || h.Get("Content-Length") != "16" || h.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD = %d %q length %q ranges %q, want 200, no body, 16, bytes", status, body, h.Get("Content-Length"), h.Get("Accept-Ranges"))
	}
}

func TestRange(t *testing.T) {
	srv, logs := fixture(t)
	status, h, body := do(t, srv, "GET", "/sub/vmlinuz", map[string]string{"Range": "bytes=4-9"})
	if status != 206 || body != "456789" || h.Get("Content-Range") != "bytes 4-9/16" {
		t.Errorf("range = %d %q %q, want 206 \"456789\" \"bytes 4-9/16\"", status, body, h.Get("Content-Range"))
	}
	status, _, _ = do(t, srv, "GET", "/sub/vmlinuz", map[string]string{"Range": "bytes=100-"})
	if status != 416 {
		t.Errorf("range past the end = %d, want 416", status)
	}
	recs := logs.records(t)
	if len(recs) != 2 {
		t.Fatalf("%d log records, want 2: %v", len(recs), recs)
	}
	r := recs[0]
	if r["msg"] != "request" || r["method"] != "GET" || r["path"] != "/sub/vmlinuz" || r["status"] != 206.0 || r["bytes"] != 6.0 {
		t.Errorf("log record %v, want GET /sub/vmlinuz 206 6 bytes", r)
	}
	for _, k := range []string{"duration", "remote"} {
		if _, ok := r[k]; !ok {
			t.Errorf("log record %v has no %s", r, k)
		}
	}
	if recs[1]["status"] != 416.0 {
		t.Errorf("second record %v, want status 416", recs[1])
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	}()
	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts connections after shutdown")
	}
}
