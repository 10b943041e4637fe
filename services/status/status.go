// Package status is the host's status report: the health gate's verdict,
// every service with its state, restarts, last exit and cgroup usage, and the
// applied hardening with pass or fail. PID 1 serves it as JSON on a unix
// socket; Fetch reads it (the management service and hvstatus do), and
// WriteText renders it for a console.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// Socket is where PID 1 serves the report.
const Socket = "/run/hardvisor/status.sock"

// Path is the report's URL path on the socket.
const Path = "/v1/status"

// Report is the host's status.
type Report struct {
	Version  string `json:"version"`
	Hostname string `json:"hostname"`
	Profile  string `json:"profile"`
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

// Handler serves the report that get gives at Path, as JSON.
func Handler(get func() Report) http.Handler {
	// No method in the pattern: the busybox build of PID 1 may compile this
	// package with pre-1.22 ServeMux semantics, which take it literally.
	mux := http.NewServeMux()
	mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(get())
	})
	return mux
}

// Serve serves the report on the listener until it fails.
func Serve(l net.Listener, get func() Report) error {
	srv := &http.Server{Handler: Handler(get), ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(l)
}

// Fetch reads the report from the unix socket sock.
func Fetch(ctx context.Context, sock string) (*Report, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://hardvisor"+Path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("status from %s: %s: %s", sock, resp.Status, strings.TrimSpace(string(b)))
	}
	var r Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("status from %s: %w", sock, err)
	}
	return &r, nil
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
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRESTARTS\tLAST EXIT\tMEMORY\tTASKS\tCPU\tREASON")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.State, pid, s.Restarts, last, mib(s.Memory), s.PIDs,
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
