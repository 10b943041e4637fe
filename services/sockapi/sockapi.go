// Package sockapi is the small JSON-over-HTTP convention hardvisor's local
// unix-socket APIs share (PID 1's control socket, vmm's socket): replies
// and errors as indented JSON, an error body {"error": "…"}, a method check
// with its Allow header, and a client that keeps its one connection.
package sockapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
)

// ErrorReply is the body of every error response.
type ErrorReply struct {
	Error string `json:"error"`
}

// Reply writes v as the JSON body of a code response.
func Reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Fail writes err as a code error response.
func Fail(w http.ResponseWriter, code int, err error) { Reply(w, code, ErrorReply{Error: err.Error()}) }

// Method tells whether r uses method m (HEAD counts as GET); otherwise it
// answers 405 with the Allow header and gives false.
func Method(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m || m == http.MethodGet && r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", m)
	Fail(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: method not allowed", r.Method, r.URL.Path))
	return false
}

// Client calls an API on a unix socket, keeping its connection for the
// next call; use one Client for many calls.
type Client struct {
	// Socket is the socket's path.
	Socket string
	// Name names the server in errors ("PID 1", "vmm").
	Name string
	// Sentinels are the errors an error response wraps, by its status, when
	// its message contains their text, so callers can tell them apart with
	// errors.Is (an unknown name's 404, a refusal's 409).
	Sentinels map[int]error

	once sync.Once
	hc   *http.Client
}

// Do sends a method request for path with body (nil: none) as JSON and
// decodes the reply into out: nothing when out is nil, the raw body when
// out is a *[]byte, JSON otherwise. A reply other than 2xx is an error
// carrying the server's message.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	c.once.Do(func() {
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", c.Socket)
			},
		}}
	})
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s at %s: %w", c.Name, c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := strings.TrimSpace(string(b))
		var e ErrorReply
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if s := c.Sentinels[resp.StatusCode]; s != nil && strings.Contains(msg, s.Error()) {
			return fmt.Errorf("%s: %s: %w", c.Name, msg, s)
		}
		return fmt.Errorf("%s: %s: %s", c.Name, resp.Status, msg)
	}
	switch out := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out, err = io.ReadAll(resp.Body)
		return err
	default:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s at %s: %w", c.Name, c.Socket, err)
		}
	}
	return nil
}
