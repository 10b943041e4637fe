// Package status is the host's status report and PID 1's control socket.
// The report is the health gate's verdict, every service with its state,
// restarts, last exit and cgroup usage, the applied hardening with pass or
// fail, and the network layout. PID 1 serves it as JSON on a unix socket,
// with the few actions the management service may ask for (a service's
// logs, a restart, reboot or poweroff); Client reads and asks (the
// management service and hvstatus use it), and WriteText renders a report
// for a console.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"hardvisor.dev/hardvisor/services/sockapi"
)

// Socket is PID 1's control socket (root only).
const Socket = "/run/hardvisor/control.sock"

// Path is the report's URL path on the socket.
const Path = "/v1/status"

// Power actions.
const (
	PowerReboot   = "reboot"
	PowerPoweroff = "poweroff"
)

// ErrUnknownService is what the socket's 404 for a service name becomes.
var ErrUnknownService = errors.New("unknown service")

// Report is the host's status.
type Report struct {
	Version  string `json:"version"`
	Hostname string `json:"hostname"`
	Profile  string `json:"profile"`
	// At is when PID 1 made the report (the management API answers with
	// one up to a few seconds old).
	At time.Time `json:"at"`
	// Boots counts the boots that mounted the data partition; 0 without one.
	Boots int `json:"boots"`
	// Gate is the health gate's verdict.
	Gate Gate `json:"gate"`
	// Services are the host services, in declaration order.
	Services []Service `json:"services"`
	// Hardening is every hardening setting, applied and verified.
	Hardening []Check `json:"hardening"`
	// Machine is why guests have no room on this host; empty when they have.
	Machine string `json:"machine,omitempty"`
	// InitRSS is PID 1's resident memory in bytes (the service manager runs
	// inside it).
	InitRSS uint64 `json:"initRSS"`
	// Network is the host's network layout; nil before the network step.
	Network *Network `json:"network,omitempty"`
}

// Network is the host's network layout as PID 1 applied it.
type Network struct {
	// Namespace is the management namespace's path; empty without one.
	Namespace string `json:"namespace,omitempty"`
	// NamespaceLinks are the interfaces inside it, read when the report
	// is made: lo and the management NIC, nothing else.
	NamespaceLinks []string `json:"namespaceLinks,omitempty"`
	// MgmtNIC is the management NIC; Address its address ("" while DHCP
	// has no lease), DHCP whether it came from a DHCP server.
	MgmtNIC string `json:"mgmtNIC,omitempty"`
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	DHCP    bool   `json:"dhcp,omitempty"`
	// Bridges are the guest trunks: "hvbr0: hvbond0 (eth1 eth2) prod/100 lab/untagged".
	Bridges []string `json:"bridges,omitempty"`
	// Down are the NICs kept down.
	Down []string `json:"down,omitempty"`
}

// Gate is the health gate's verdict: every required service ready and every
// hardening check passed, within host.readyTimeout.
type Gate struct {
	// Decided is false while the gate is still waiting.
	Decided bool `json:"decided"`
	// Ready is true once the gate passed.
	Ready bool `json:"ready"`
	// At is when the gate decided.
	At time.Time `json:"at,omitzero"`
	// Failing explains a gate that failed: each failing service with its
	// last log lines, each failed hardening check.
	Failing []string `json:"failing,omitempty"`
}

// Service is one service's status.
type Service struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Pid      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts"`
	// LastExit is how the last run ended ("exit status 1", "killed by
	// signal 9"); empty before the first end.
	LastExit string `json:"lastExit,omitempty"`
	// Reason says what a service waits for or why it failed.
	Reason   string `json:"reason,omitempty"`
	Required bool   `json:"required"`
	// Health is the last health check's failure; empty when healthy or unchecked.
	Health string `json:"health,omitempty"`
	// Memory is memory.current, PIDs pids.current and CPU the CPU time of
	// the service's cgroup.
	Memory uint64        `json:"memory"`
	PIDs   uint64        `json:"pids"`
	CPU    time.Duration `json:"cpu"`
	// UID is the running process's user ID and CapEff its effective
	// capabilities (hex, as /proc/PID/status shows them); unset when it is
	// not running.
	UID    *int   `json:"uid,omitempty"`
	CapEff string `json:"capEff,omitempty"`
	// RSS is the main process's resident memory (VmRSS), in bytes.
	RSS uint64 `json:"rss,omitempty"`
}

// User renders UID for a table: the number, or "-" when not running.
func (s Service) User() string {
	if s.UID == nil {
		return "-"
	}
	return fmt.Sprint(*s.UID)
}

// Check is the outcome of one hardening setting, applied and verified.
type Check struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got,omitempty"`
	// OK is true when the setting reads back as wanted; NotApplicable when
	// this kernel does not have it.
	OK            bool   `json:"ok"`
	NotApplicable bool   `json:"notApplicable,omitempty"`
	Err           string `json:"err,omitempty"`
}

func (c Check) String() string {
	switch {
	case c.NotApplicable:
		return c.Name + ": not in this kernel"
	case c.OK:
		return c.Name + " = " + c.Want
	case c.Err != "":
		return fmt.Sprintf("%s: want %s: %s", c.Name, c.Want, c.Err)
	}
	return fmt.Sprintf("%s: want %s, reads %s", c.Name, c.Want, c.Got)
}

// Host is what PID 1 offers on its control socket.
type Host interface {
	// Report is the status now.
	Report() Report
	// Logs gives a service's last lines; an unknown name wraps ErrUnknownService.
	Logs(service string, lines int) ([]string, error)
	// Restart restarts a service; an unknown name wraps ErrUnknownService.
	Restart(service string) error
	// Power asks the host to reboot or power off.
	Power(action string) error
}

// LogsReply is the body of a logs request.
type LogsReply struct {
	Service string   `json:"service"`
	Lines   []string `json:"lines"`
}

// PowerRequest is the body of a power request.
type PowerRequest struct {
	Action string `json:"action"`
}

// Handler serves the control socket:
//
//	GET  /v1/status                     the Report
//	GET  /v1/services/NAME/logs?lines=N  LogsReply
//	POST /v1/services/NAME/restart       202
//	POST /v1/power {"action": "reboot"|"poweroff"}  202
//
// Routing is by hand: the busybox build of PID 1 may compile this package
// with pre-1.22 ServeMux semantics, which take method patterns literally.
func Handler(h Host) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case path == Path:
			if !sockapi.Method(w, r, http.MethodGet) {
				return
			}
			sockapi.Reply(w, http.StatusOK, h.Report())
		case path == "/v1/power":
			if !sockapi.Method(w, r, http.MethodPost) {
				return
			}
			var req PowerRequest
			if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
				sockapi.Fail(w, http.StatusBadRequest, fmt.Errorf("power: %w", err))
				return
			}
			if err := h.Power(req.Action); err != nil {
				sockapi.Fail(w, http.StatusBadRequest, err)
				return
			}
			sockapi.Reply(w, http.StatusAccepted, req)
		case strings.HasPrefix(path, "/v1/services/"):
			name, verb, _ := strings.Cut(strings.TrimPrefix(path, "/v1/services/"), "/")
			switch verb {
			case "logs":
				if !sockapi.Method(w, r, http.MethodGet) {
					return
				}
				n := 100
				if q := r.URL.Query().Get("lines"); q != "" {
					v, err := strconv.Atoi(q)
					if err != nil || v < 0 {
						sockapi.Fail(w, http.StatusBadRequest, fmt.Errorf("lines %q: want a number", q))
						return
					}
					n = v
				}
				lines, err := h.Logs(name, n)
				if err != nil {
					sockapi.Fail(w, errStatus(err), err)
					return
				}
				sockapi.Reply(w, http.StatusOK, LogsReply{Service: name, Lines: lines})
			case "restart":
				if !sockapi.Method(w, r, http.MethodPost) {
					return
				}
				if err := h.Restart(name); err != nil {
					sockapi.Fail(w, errStatus(err), err)
					return
				}
				sockapi.Reply(w, http.StatusAccepted, map[string]any{"service": name, "restarted": true})
			default:
				sockapi.Fail(w, http.StatusNotFound, fmt.Errorf("no %s", path))
			}
		default:
			sockapi.Fail(w, http.StatusNotFound, fmt.Errorf("no %s", path))
		}
	})
}

func errStatus(err error) int {
	if errors.Is(err, ErrUnknownService) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// Serve serves h on the listener until it fails.
func Serve(l net.Listener, h Host) error {
	srv := &http.Server{Handler: Handler(h), ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(l)
}

// Client talks to PID 1's control socket, keeping its connection for the
// next call; use one Client for many calls.
type Client struct {
	// Socket is the socket's path; default Socket.
	Socket string

	once sync.Once
	c    *sockapi.Client
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	c.once.Do(func() {
		sock := c.Socket
		if sock == "" {
			sock = Socket
		}
		c.c = &sockapi.Client{Socket: sock, Name: "PID 1", Sentinels: map[int]error{http.StatusNotFound: ErrUnknownService}}
	})
	return c.c.Do(ctx, method, path, body, out)
}

// Status reads the report.
func (c *Client) Status(ctx context.Context) (*Report, error) {
	var r Report
	if err := c.do(ctx, http.MethodGet, Path, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Logs reads a service's last lines.
func (c *Client) Logs(ctx context.Context, service string, lines int) ([]string, error) {
	var r LogsReply
	if err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/logs?lines="+strconv.Itoa(lines), nil, &r); err != nil {
		return nil, err
	}
	return r.Lines, nil
}

// Restart asks PID 1 to restart a service.
func (c *Client) Restart(ctx context.Context, service string) error {
	return c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/restart", nil, nil)
}

// Power asks PID 1 to reboot or power off.
func (c *Client) Power(ctx context.Context, action string) error {
	return c.do(ctx, http.MethodPost, "/v1/power", PowerRequest{Action: action}, nil)
}

// Fetch reads the report from the unix socket sock.
func Fetch(ctx context.Context, sock string) (*Report, error) {
	return (&Client{Socket: sock}).Status(ctx)
}

// WriteText renders the report as a console would show it: a header, the
// gate, a service table and the hardening that did not pass.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "hardvisor %s on %s (%s), boot %d, init rss %s\n", r.Version, r.Hostname, r.Profile, r.Boots, mib(r.InitRSS))
	switch {
	case !r.Gate.Decided:
		fmt.Fprintf(ew, "gate: waiting\n")
	case r.Gate.Ready:
		fmt.Fprintf(ew, "gate: ready\n")
	default:
		fmt.Fprintf(ew, "gate: not ready\n")
		for _, f := range r.Gate.Failing {
			fmt.Fprintf(ew, "  %s\n", strings.ReplaceAll(f, "\n", "\n  "))
		}
	}
	if r.Machine != "" {
		fmt.Fprintf(ew, "machine: %s\n", r.Machine)
	}
	if n := r.Network; n != nil {
		switch {
		case n.MgmtNIC == "":
			fmt.Fprintf(ew, "management: no NIC\n")
		default:
			how := "static"
			if n.DHCP {
				how = "dhcp"
			}
			addr := n.Address
			if addr == "" {
				addr = "no address yet"
			}
			fmt.Fprintf(ew, "management: %s %s (%s) gateway %s in %s [%s]\n", n.MgmtNIC, addr, how, orDash(n.Gateway), n.Namespace, strings.Join(n.NamespaceLinks, " "))
		}
		for _, b := range n.Bridges {
			fmt.Fprintf(ew, "bridge: %s\n", b)
		}
		if len(n.Down) > 0 {
			fmt.Fprintf(ew, "down: %s\n", strings.Join(n.Down, " "))
		}
	}
	tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tUSER\tRESTARTS\tLAST EXIT\tMEMORY\tTASKS\tCPU\tREASON")
	for _, s := range r.Services {
		pid := "-"
		if s.Pid > 0 {
			pid = fmt.Sprint(s.Pid)
		}
		last := s.LastExit
		if last == "" {
			last = "-"
		}
		reason := s.Reason
		if s.Health != "" {
			reason = strings.TrimSpace(reason + " health: " + s.Health)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.State, pid, s.User(), s.Restarts, last, mib(s.Memory), s.PIDs,
			s.CPU.Round(time.Millisecond), reason)
	}
	tw.Flush()
	ok, na := 0, 0
	var bad []string
	for _, c := range r.Hardening {
		switch {
		case c.NotApplicable:
			na++
		case c.OK:
			ok++
		default:
			bad = append(bad, c.String())
		}
	}
	fmt.Fprintf(ew, "hardening: %d passed, %d failed, %d not in this kernel\n", ok, len(bad), na)
	for _, b := range bad {
		fmt.Fprintf(ew, "  FAIL %s\n", b)
	}
	return ew.err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mib(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	} else if n < len(p) {
		e.err = errors.New("short write")
	}
	return n, e.err
}
