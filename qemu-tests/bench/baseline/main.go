// Command baseline is the management API benchmark's yardstick: a minimal
// Go HTTPS server with mgmtd's TLS (mutual TLS 1.3, the same certificates)
// that answers GET /v1/status with a fixed payload, which PUT /v1/status
// sets. The benchmark runs it on the host as a service beside mgmtd and
// gives it mgmtd's own status reply, so the two differ only in what mgmtd
// does per request.
//
// It enters --netns itself before it listens: config services run in the
// root namespace, and the management NIC is in the management one.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/services/mgmt/pki"
)

func main() {
	port := flag.Int("port", 8444, "HTTPS port")
	pkiDir := flag.String("pki", "/etc/hardvisor/pki", "directory with ca.pem, server.pem and server-key.pem")
	netns := flag.String("netns", "", "network namespace to listen in")
	flag.Parse()
	if err := run(*port, *pkiDir, *netns); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(port int, pkiDir, netns string) error {
	var files [3][]byte
	for i, name := range []string{"ca.pem", "server.pem", "server-key.pem"} {
		b, err := os.ReadFile(filepath.Join(pkiDir, name))
		if err != nil {
			return err
		}
		files[i] = b
	}
	tc, err := pki.ServerTLSConfig(files[1], files[2], files[0])
	if err != nil {
		return err
	}
	l, err := listen(port, netns)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	payload := []byte("{}")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case http.MethodGet:
			mu.Lock()
			b := payload
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		case http.MethodPut:
			b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			payload = b
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	fmt.Fprintf(os.Stderr, "baseline: serving on port %d\n", port)
	return (&http.Server{Handler: h, TLSConfig: tc}).ServeTLS(l, "", "")
}

// listen opens the listening socket in netns, from a thread that enters it
// and is then thrown away (the socket keeps its namespace).
func listen(port int, netns string) (net.Listener, error) {
	addr := net.JoinHostPort("", strconv.Itoa(port))
	if netns == "" {
		return net.Listen("tcp", addr)
	}
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter %s: %w", netns, err)}
			return
		}
		l, err := net.Listen("tcp", addr)
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}
