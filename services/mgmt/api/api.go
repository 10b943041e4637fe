// Package api is the management API's HTTP handler: JSON over HTTPS with
// mutual TLS (the server runs it with pki.ServerTLSConfig), versioned under
// /v1/, acting on the host through PID 1's control socket (Host) and on
// its guests through vmm's (Guests).
//
//	role      request                                 answer
//	viewer    GET  /v1/status                         the whole status.Report
//	viewer    GET  /v1/hardening                      the report's Hardening
//	viewer    GET  /v1/services                       the report's Services
//	viewer    GET  /v1/services/NAME/logs?lines=N     LogsReply (N 1-10000, default 100)
//	operator  POST /v1/services/NAME/restart          202 RestartReply
//	viewer    GET  /v1/network                        the report's Network (null before it is laid out)
//	operator  GET  /v1/audit?after=SEQ&limit=N        AuditReply (N 1-1000, default 100)
//	admin     POST /v1/power {"action":"reboot"}      202 PowerReply (or "poweroff")
//	viewer    GET  /v1/guests                         vmm.ListReply: every guest's vmm.Status
//	viewer    GET  /v1/guests/NAME                    vmm.Status
//	viewer    GET  /v1/guests/NAME/console            ConsoleReply: the console log's tail
//	operator  POST /v1/guests/NAME/start              202 vmm.Status once running
//	operator  POST /v1/guests/NAME/stop               202 vmm.Status once off (ACPI, destroyed after vmm's deadline)
//	operator  POST /v1/guests/NAME/restart            202 vmm.Status once running again
//
// The guests' statuses are vmm's, as it gives them: read from vmm at each
// request, not cached, vmm keeping them in memory.
//
// Routing is by hand, not with ServeMux patterns: the u-root busybox build
// may compile this package with pre-1.22 ServeMux semantics.
//
// # Access
//
// The client's role is the one in its verified certificate (pki.RoleOf). A
// request without a verified client certificate gets 401, one whose role
// does not allow the operation 403. Errors are JSON, ErrorReply, with 400
// for bad input (unknown query parameters and JSON fields included), 404
// for an unknown path, service or guest, and for every guests path on a
// host that runs none ("this host runs no guests"), 405 for a wrong method
// (with Allow), 413 for a body over MaxBody, 502 when the host or vmm fails
// and 503 when vmm cannot be reached or the audit log cannot record a
// change.
//
// # Audit
//
// Every denied request (401, 403) and every request to change something
// (restart, power, a guest's start, stop, restart) is appended to the audit
// log; reads are not. A change is
// recorded before it is carried out, with the status 202 it is answered
// with: if the record cannot be written the change is not made (503). When
// the host then fails, a second record of the same request gives the final
// status (404, 502, 503) and the error. A change refused for its input (400,
// 413) is recorded with that status.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
)

// Host is what the API acts on: PID 1, reached through its control socket
// (*status.Client is one).
type Host interface {
	// Status is the host's status report.
	Status(ctx context.Context) (*status.Report, error)
	// Logs gives the last lines a service printed.
	Logs(ctx context.Context, service string, lines int) ([]string, error)
	// Restart restarts a service.
	Restart(ctx context.Context, service string) error
	// Power reboots ("reboot") or powers off ("poweroff") the host.
	Power(ctx context.Context, action string) error
}

// ErrUnknownService is what a Host's error wraps when it has no service of
// the name asked for; the API answers it with 404. It is the control
// socket's error, so *status.Client needs no translation.
var ErrUnknownService = status.ErrUnknownService

// Options configure the handler.
type Options struct {
	// Host is what the API acts on; required.
	Host Host
	// Guests is vmm, for /v1/guests. Nil: the host runs no guests, and
	// every guests path answers 404.
	Guests Guests
	// Audit is the audit log. Nil: every change is refused with 503 and
	// /v1/audit answers 503.
	Audit *audit.Log
	// Logger gets audit failures and one line per change; nil discards.
	Logger *slog.Logger
	// Now is the clock for the durations logged; nil is time.Now.
	Now func() time.Time
}

// Limits of requests.
const (
	// MaxBody is the largest request body, in bytes (64 KiB).
	MaxBody = 64 << 10
	// DefaultLogLines and MaxLogLines bound /v1/services/NAME/logs?lines=.
	DefaultLogLines = 100
	MaxLogLines     = 10000
	// DefaultAuditLimit and MaxAuditLimit bound /v1/audit?limit=.
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// hostActionTimeout bounds a change once it is recorded. It runs detached
// from the request, so that a client going away does not abort a restart or
// power-off halfway after the audit log says it was accepted.
const hostActionTimeout = 5 * time.Minute

// ErrorReply is the body of every error response.
type ErrorReply struct {
	Error string `json:"error"`
}

// LogsReply is the body of GET /v1/services/NAME/logs.
type LogsReply struct {
	Service string   `json:"service"`
	Lines   []string `json:"lines"`
}

// RestartReply is the body of POST /v1/services/NAME/restart.
type RestartReply struct {
	Service   string `json:"service"`
	Restarted bool   `json:"restarted"`
}

// PowerRequest is the body of POST /v1/power.
type PowerRequest struct {
	// Action is "reboot" or "poweroff".
	Action string `json:"action"`
}

// PowerReply is the body of POST /v1/power's answer.
type PowerReply struct {
	Action   string `json:"action"`
	Accepted bool   `json:"accepted"`
}

// AuditHead is the newest audit record's seq and hash (0 and audit.Genesis
// for an empty log): the anchor to verify a copy of the log against.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// AuditReply is the body of GET /v1/audit.
type AuditReply struct {
	Head    AuditHead      `json:"head"`
	Records []audit.Record `json:"records"`
}

// New returns the management API's handler. It panics without a Host.
func New(opts Options) http.Handler {
	if opts.Host == nil {
		panic("api.New: no Host")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &handler{host: opts.Host, guests: opts.Guests, audit: opts.Audit, log: opts.Logger, now: opts.Now,
		status: &statusCache{host: opts.Host, now: opts.Now}}
}

type handler struct {
	host   Host
	guests Guests // nil when the host runs no guests
	audit  *audit.Log
	log    *slog.Logger
	now    func() time.Time
	status *statusCache
}

// reqError is an error answered with its own status.
type reqError struct {
	status int
	msg    string
}

func (e *reqError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *reqError {
	return &reqError{status: status, msg: fmt.Sprintf(format, args...)}
}

// op is one operation of the API, as a request path names it.
type op struct {
	method string
	need   pki.Role
	// action and target are what the audit log calls it.
	action string
	target string
	// read answers a request that changes nothing; change checks the
	// input of one that does and says what to do. One of them is set.
	read   func(h *handler, r *http.Request, target string) (any, error)
	change func(h *handler, r *http.Request, target string) (*change, error)
}

// change is a checked request to change something.
type change struct {
	action string // as audited, when more precise than the op's
	// do carries the change out and gives the answer's body.
	do func(ctx context.Context) (any, error)
}

// route finds the operation for a request path.
func route(path string) (op, bool) {
	rest, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return op{}, false
	}
	switch rest {
	case "status":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "status.read", read: readView(viewStatus)}, true
	case "hardening":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "hardening.read", read: readView(viewHardening)}, true
	case "services":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "services.read", read: readView(viewServices)}, true
	case "network":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "network.read", read: readView(viewNetwork)}, true
	case "audit":
		return op{method: http.MethodGet, need: pki.RoleOperator, action: "audit.read", read: readAudit}, true
	case "power":
		return op{method: http.MethodPost, need: pki.RoleAdmin, action: "power", change: changePower}, true
	case "guests":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "guests.read", read: readGuests}, true
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[1] == "" {
		return op{}, false
	}
	name := parts[1]
	if len(parts) == 2 {
		if parts[0] == "guests" {
			return op{method: http.MethodGet, need: pki.RoleViewer, action: "guests.read", target: name, read: readGuest}, true
		}
		return op{}, false
	}
	switch parts[0] + "/" + parts[2] {
	case "services/logs":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "services.logs", target: name, read: readLogs}, true
	case "services/restart":
		return op{method: http.MethodPost, need: pki.RoleOperator, action: "services.restart", target: name, change: changeRestart}, true
	case "guests/console":
		return op{method: http.MethodGet, need: pki.RoleViewer, action: "guests.console", target: name, read: readConsole}, true
	case "guests/start":
		return op{method: http.MethodPost, need: pki.RoleOperator, action: "guests.start", target: name, change: changeGuest(Guests.Start)}, true
	case "guests/stop":
		return op{method: http.MethodPost, need: pki.RoleOperator, action: "guests.stop", target: name, change: changeGuest(Guests.Stop)}, true
	case "guests/restart":
		return op{method: http.MethodPost, need: pki.RoleOperator, action: "guests.restart", target: name, change: changeGuest(Guests.Restart)}, true
	}
	return op{}, false
}

// caller is who sent a request, from its verified client certificate.
type caller struct {
	name string
	role pki.Role
	// err is why the caller may do nothing, answered with status.
	err    error
	status int
}

func identify(r *http.Request) caller {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return caller{err: errors.New("a verified client certificate is required"), status: http.StatusUnauthorized}
	}
	cert := r.TLS.VerifiedChains[0][0]
	role, err := pki.RoleOf(cert)
	if err != nil {
		return caller{name: cert.Subject.CommonName, err: err, status: http.StatusForbidden}
	}
	return caller{name: cert.Subject.CommonName, role: role}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o, found := route(r.URL.Path)
	c := identify(r)
	rec := audit.Record{Actor: c.name, Role: string(c.role), Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path,
		Action: o.action, Target: o.target}
	if c.err != nil {
		h.deny(w, rec, c.status, c.err.Error())
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API path %s", r.URL.Path))
		return
	}
	if r.Method != o.method {
		w.Header().Set("Allow", o.method)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed, want %s", r.Method, r.URL.Path, o.method))
		return
	}
	if !c.role.Allows(o.need) {
		h.deny(w, rec, http.StatusForbidden, fmt.Sprintf("%s needs role %s: %q has role %s", o.action, o.need, c.name, c.role))
		return
	}
	if o.change != nil {
		h.serveChange(w, r, o, rec)
		return
	}
	v, err := o.read(h, r, o.target)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// deny answers a request that may not be served, and records it. The
// denial stands whether or not the record is written.
func (h *handler) deny(w http.ResponseWriter, rec audit.Record, code int, msg string) {
	rec.Allowed = false
	rec.Status = code
	rec.Detail = msg
	if _, err := h.append(rec); err != nil {
		h.log.Error("audit log: cannot record a denied request", "actor", rec.Actor, "method", rec.Method, "path", rec.Path,
			"status", code, "err", err)
	}
	writeError(w, code, msg)
}

// serveChange checks, records, then carries out a change: never one the
// audit log did not take.
func (h *handler) serveChange(w http.ResponseWriter, r *http.Request, o op, rec audit.Record) {
	start := h.now()
	rec.Allowed = true
	ch, err := o.change(h, r, o.target)
	if err != nil {
		code, msg := errStatus(err)
		rec.Status, rec.Detail = code, msg
		if _, aerr := h.append(rec); aerr != nil {
			h.log.Error("audit log: cannot record a refused change", "actor", rec.Actor, "action", rec.Action,
				"target", rec.Target, "status", code, "err", aerr)
		}
		writeError(w, code, msg)
		return
	}
	if ch.action != "" {
		rec.Action = ch.action
	}
	rec.Status = http.StatusAccepted
	if _, err := h.append(rec); err != nil {
		h.log.Error("audit log: refusing a change it cannot record", "actor", rec.Actor, "action", rec.Action,
			"target", rec.Target, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the audit log cannot record this request, so it was not carried out")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), hostActionTimeout)
	reply, err := ch.do(ctx)
	cancel()
	h.status.invalidate()
	if err != nil {
		code, msg := errStatus(err)
		rec.Status, rec.Detail = code, msg
		if _, aerr := h.append(rec); aerr != nil {
			h.log.Error("audit log: cannot record a failed change", "actor", rec.Actor, "action", rec.Action,
				"target", rec.Target, "status", code, "err", aerr)
		}
		h.log.Warn("change failed", "actor", rec.Actor, "action", rec.Action, "target", rec.Target, "status", code,
			"err", err, "took", h.now().Sub(start))
		writeError(w, code, msg)
		return
	}
	h.log.Info("change", "actor", rec.Actor, "role", rec.Role, "action", rec.Action, "target", rec.Target,
		"took", h.now().Sub(start))
	writeJSON(w, http.StatusAccepted, reply)
}

func (h *handler) append(rec audit.Record) (audit.Record, error) {
	if h.audit == nil {
		return audit.Record{}, errors.New("no audit log")
	}
	return h.audit.Append(rec)
}

func changeRestart(h *handler, r *http.Request, name string) (*change, error) {
	if err := noInput(r); err != nil {
		return nil, err
	}
	return &change{do: func(ctx context.Context) (any, error) {
		if err := h.host.Restart(ctx, name); err != nil {
			return nil, unknownService(err, name)
		}
		return RestartReply{Service: name, Restarted: true}, nil
	}}, nil
}

// noInput checks a change that takes no input: no query, and a body, if
// any, that is an empty object. A field the API does not know is a request
// it would not carry out as meant.
func noInput(r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	var none struct{}
	return decodeBody(r, &none, false)
}

func changePower(h *handler, r *http.Request, _ string) (*change, error) {
	if err := noQuery(r); err != nil {
		return nil, err
	}
	var req PowerRequest
	if err := decodeBody(r, &req, true); err != nil {
		return nil, err
	}
	switch req.Action {
	case status.PowerReboot, status.PowerPoweroff:
	default:
		return nil, errorf(http.StatusBadRequest, "power: unknown action %q: want %s or %s", req.Action, status.PowerReboot, status.PowerPoweroff)
	}
	action := req.Action
	return &change{action: "power." + action, do: func(ctx context.Context) (any, error) {
		if err := h.host.Power(ctx, action); err != nil {
			return nil, err
		}
		return PowerReply{Action: action, Accepted: true}, nil
	}}, nil
}

// readView answers a read of the status report or one of its parts, from
// the status cache.
func readView(view string) func(h *handler, r *http.Request, _ string) (any, error) {
	return func(h *handler, r *http.Request, _ string) (any, error) {
		if err := noQuery(r); err != nil {
			return nil, err
		}
		return h.status.view(r.Context(), view)
	}
}

func readLogs(h *handler, r *http.Request, name string) (any, error) {
	q, err := query(r, "lines")
	if err != nil {
		return nil, err
	}
	n, err := intParam(q, "lines", DefaultLogLines, MaxLogLines)
	if err != nil {
		return nil, err
	}
	lines, err := h.host.Logs(r.Context(), name, n)
	if err != nil {
		return nil, unknownService(fmt.Errorf("logs of %s: %w", name, err), name)
	}
	return LogsReply{Service: name, Lines: orEmpty(lines)}, nil
}

func readAudit(h *handler, r *http.Request, _ string) (any, error) {
	q, err := query(r, "after", "limit")
	if err != nil {
		return nil, err
	}
	var after uint64
	if s, ok := q["after"]; ok {
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, errorf(http.StatusBadRequest, "after=%q: want a record's seq, 0 or more", s)
		}
	}
	limit, err := intParam(q, "limit", DefaultAuditLimit, MaxAuditLimit)
	if err != nil {
		return nil, err
	}
	if h.audit == nil {
		return nil, errorf(http.StatusServiceUnavailable, "no audit log")
	}
	recs, err := h.audit.Records(after, limit)
	if err != nil {
		h.log.Error("audit log: cannot read records", "err", err)
		return nil, errorf(http.StatusInternalServerError, "audit log: %v", err)
	}
	// The head after the records: it is never older than what they show.
	seq, hash := h.audit.Head()
	return AuditReply{Head: AuditHead{Seq: seq, Hash: hash}, Records: orEmpty(recs)}, nil
}

// orEmpty makes a nil list an empty one, so that JSON shows [] and not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// query parses the query string: only the parameters named, each at most
// once.
func query(r *http.Request, names ...string) (map[string]string, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "query: %v", err)
	}
	out := make(map[string]string, len(vals))
	for k, v := range vals {
		known := slices.Contains(names, k)
		switch {
		case !known && len(names) == 0:
			return nil, errorf(http.StatusBadRequest, "unknown query parameter %q: %s takes none", k, r.URL.Path)
		case !known:
			return nil, errorf(http.StatusBadRequest, "unknown query parameter %q: want %s", k, strings.Join(names, " or "))
		case len(v) > 1:
			return nil, errorf(http.StatusBadRequest, "query parameter %q given %d times", k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

func noQuery(r *http.Request) error {
	_, err := query(r)
	return err
}

// intParam is the query parameter name as a number from 1 to max, def when
// it is absent.
func intParam(q map[string]string, name string, def, max int) (int, error) {
	s, ok := q[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, errorf(http.StatusBadRequest, "%s=%q: want a number from 1 to %d", name, s, max)
	}
	return n, nil
}

// decodeBody decodes a request body of at most MaxBody bytes holding one
// JSON object whose fields v all knows. An empty body is an error only
// when required.
func decodeBody(r *http.Request, v any, required bool) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	if len(data) > MaxBody {
		return errorf(http.StatusRequestEntityTooLarge, "request body is over %d bytes", MaxBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if required {
			return errorf(http.StatusBadRequest, "request body: want a JSON object")
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "request body: more than one JSON value")
	}
	return nil
}

// unknownService turns a Host's error for a service it does not have into
// a plain 404; other errors are returned as they are.
func unknownService(err error, name string) error {
	if errors.Is(err, ErrUnknownService) {
		return errorf(http.StatusNotFound, "unknown service %q", name)
	}
	return err
}

// errStatus is the status and message an error is answered with: its own
// for a request error, 404 for an unknown service, else 502, the host
// having failed.
func errStatus(err error) (int, string) {
	var re *reqError
	switch {
	case errors.As(err, &re):
		return re.status, re.msg
	case errors.Is(err, ErrUnknownService):
		return http.StatusNotFound, err.Error()
	}
	return http.StatusBadGateway, "host: " + err.Error()
}

func writeErr(w http.ResponseWriter, err error) {
	code, msg := errStatus(err)
	writeError(w, code, msg)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorReply{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			code, body = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
		}
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	// A full slice expression: a cached body is shared, never appended to.
	w.Write(append(body[:len(body):len(body)], '\n'))
}
