// Package serve is the HTTP server behind `hardvisor serve`: it hands the
// network boot bundle to iPXE and to UEFI HTTP boot. It serves regular files
// below one directory, opened through an os.Root so that no path, `..` or
// symbolic link can reach outside it, answers GET and HEAD only (with Range
// support), lists no directories and logs every request.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// shutdownTimeout bounds how long Serve waits for requests in flight (a
// kernel download) after its context is done.
const shutdownTimeout = 5 * time.Second

// Handler serves the regular files below root and logs each request (method,
// path, status, bytes, duration, remote address) to log at level Info.
func Handler(root *os.Root, log *slog.Logger) http.Handler {
	return &handler{root: root, log: log}
}

type handler struct {
	root *os.Root
	log  *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	h.serve(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	h.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"bytes", rec.bytes, "duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := fileName(r.URL.Path)
	if !ok {
		http.Error(w, "invalid path", http.StatusBadRequest)
		return
	}
	f, err := h.root.Open(name)
	if err != nil {
		fail(w, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fail(w, err)
		return
	}
	if !st.Mode().IsRegular() {
		// No directory listings, no devices or FIFOs.
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// fileName maps a URL path to a name relative to the root ("/" is the root
// itself). It refuses what the root would refuse anyway (`..`, empty
// elements, back slashes), so a probe is answered as a bad request rather
// than a miss.
func fileName(urlPath string) (string, bool) {
	name, ok := strings.CutPrefix(urlPath, "/")
	if name == "" {
		name = "."
	}
	if !ok || strings.Contains(name, `\`) || !fs.ValidPath(name) {
		return "", false
	}
	return name, true
}

func fail(w http.ResponseWriter, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	// A symbolic link out of the root, or a file we may not read.
	http.Error(w, "forbidden", http.StatusForbidden)
}

// recorder notes the status and body size a handler wrote.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Serve serves h on l until ctx is done, then stops accepting connections,
// lets requests in flight finish for a few seconds and returns nil. It
// returns the server's error if serving fails before that.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", l.Addr(), err)
	}
	return nil
}
