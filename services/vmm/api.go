package vmm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"hardvisor.dev/hardvisor/services/sockapi"
)

// Socket is where vmm serves its API: root and the group given to Listen
// (the management daemon's) may connect.
const Socket = "/run/hardvisor/vmm.sock"

// ListReply is the body of GET /v1/guests.
type ListReply struct {
	Guests []Status `json:"guests"`
}

// ErrorReply is the body of every error response.
type ErrorReply = sockapi.ErrorReply

// Host is what the handler acts on; *Manager is one.
type Host interface {
	List() []Status
	Get(name string) (Status, error)
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	Console(name string) ([]byte, error)
}

var _ Host = (*Manager)(nil)

// Handler serves the API:
//
//	GET  /v1/guests               ListReply
//	GET  /v1/guests/NAME          Status
//	POST /v1/guests/NAME/start    Status once running
//	POST /v1/guests/NAME/stop     Status once off (ACPI, destroyed after the deadline)
//	POST /v1/guests/NAME/restart  Status once running again
//	GET  /v1/guests/NAME/console  text/plain: the last 64 KiB of the console log
//
// Errors are ErrorReply: 404 for an unknown guest or path, 405 for a wrong
// method (with Allow), 500 when an action fails (the body says why; the
// guest's Status keeps it too). Routing is by hand, as in package status.
func Handler(h Host) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/v1/guests")
		switch {
		case !ok:
			sockapi.Fail(w, http.StatusNotFound, fmt.Errorf("no %s", r.URL.Path))
		case rest == "" || rest == "/":
			if sockapi.Method(w, r, http.MethodGet) {
				sockapi.Reply(w, http.StatusOK, ListReply{Guests: h.List()})
			}
		default:
			name, verb, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
			if _, err := h.Get(name); err != nil {
				sockapi.Fail(w, errStatus(err), err)
				return
			}
			var act func(context.Context, string) error
			switch verb {
			case "":
				if sockapi.Method(w, r, http.MethodGet) {
					st, err := h.Get(name)
					if err != nil {
						sockapi.Fail(w, errStatus(err), err)
						return
					}
					sockapi.Reply(w, http.StatusOK, st)
				}
				return
			case "console":
				if !sockapi.Method(w, r, http.MethodGet) {
					return
				}
				b, err := h.Console(name)
				if err != nil {
					sockapi.Fail(w, errStatus(err), err)
					return
				}
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusOK)
				w.Write(b)
				return
			case "start":
				act = h.Start
			case "stop":
				act = h.Stop
			case "restart":
				act = h.Restart
			default:
				sockapi.Fail(w, http.StatusNotFound, fmt.Errorf("no %s", r.URL.Path))
				return
			}
			if !sockapi.Method(w, r, http.MethodPost) {
				return
			}
			// The action runs to its end even if the client goes away.
			err := act(context.WithoutCancel(r.Context()), name)
			if err != nil {
				sockapi.Fail(w, errStatus(err), err)
				return
			}
			st, err := h.Get(name)
			if err != nil {
				sockapi.Fail(w, errStatus(err), err)
				return
			}
			sockapi.Reply(w, http.StatusOK, st)
		}
	})
}

func errStatus(err error) int {
	if errors.Is(err, ErrUnknownGuest) {
		return http.StatusNotFound
	}
	if errors.Is(err, ErrNoBudget) {
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Listen listens on the unix socket path (replacing a stale one), mode
// 0660, owned by root and group gid.
func Listen(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chown(path, 0, gid); err != nil {
		l.Close()
		return nil, fmt.Errorf("chown %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// Serve serves h on l until l fails or is closed.
func Serve(l net.Listener, h Host) error {
	srv := &http.Server{Handler: Handler(h), ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(l)
}

// Client calls vmm's API on its unix socket, keeping the connection.
type Client struct {
	// Socket is the socket's path; default Socket.
	Socket string

	once sync.Once
	c    *sockapi.Client
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	c.once.Do(func() {
		sock := c.Socket
		if sock == "" {
			sock = Socket
		}
		c.c = &sockapi.Client{Socket: sock, Name: "vmm", Sentinels: map[int]error{http.StatusNotFound: ErrUnknownGuest, http.StatusConflict: ErrNoBudget}}
	})
	return c.c.Do(ctx, method, path, nil, out)
}

func guestPath(name, verb string) string {
	p := "/v1/guests/" + url.PathEscape(name)
	if verb != "" {
		p += "/" + verb
	}
	return p
}

// List gives every guest's status.
func (c *Client) List(ctx context.Context) ([]Status, error) {
	var r ListReply
	if err := c.do(ctx, http.MethodGet, "/v1/guests", &r); err != nil {
		return nil, err
	}
	return r.Guests, nil
}

// Get gives one guest's status; an unknown name wraps ErrUnknownGuest.
func (c *Client) Get(ctx context.Context, name string) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, guestPath(name, ""), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *Client) act(ctx context.Context, name, verb string) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodPost, guestPath(name, verb), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Start starts a guest and gives its status.
func (c *Client) Start(ctx context.Context, name string) (*Status, error) {
	return c.act(ctx, name, "start")
}

// Stop shuts a guest down (ACPI, destroyed after vmm's deadline).
func (c *Client) Stop(ctx context.Context, name string) (*Status, error) {
	return c.act(ctx, name, "stop")
}

// Restart stops and starts a guest.
func (c *Client) Restart(ctx context.Context, name string) (*Status, error) {
	return c.act(ctx, name, "restart")
}

// Console gives the last 64 KiB of a guest's console log.
func (c *Client) Console(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	if err := c.do(ctx, http.MethodGet, guestPath(name, "console"), &b); err != nil {
		return nil, err
	}
	return b, nil
}
