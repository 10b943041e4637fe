package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/mgmt/api"
	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
	"hardvisor.dev/hardvisor/services/vmm"
)

const ctlUsage = `usage: hardvisor ctl --endpoint https://HOST[:PORT] --cert CERT.pem --key KEY.pem --ca CA.pem [--json] COMMAND

commands:
  status                           the host's status: gate, services, failed hardening
  services                         the services
  logs NAME [--lines N]            a service's last lines (default 100)
  restart NAME                     restart a service (operator)
  network                          the network layout
  audit [--after SEQ] [--limit N]  the audit log's records after SEQ (operator; default 100)
  reboot | poweroff                reboot or power off the host (admin)
  guests                           the guests
  guest NAME                       a guest's status and cgroup ceilings
  guest NAME console               the tail of a guest's console log
  guest NAME start|stop|restart    start, stop (ACPI, then destroy) or restart a guest (operator)
`

// ctlDefaultPort is the management API's port when --endpoint has none.
const ctlDefaultPort = "8443"

// ctlTimeout bounds one request, restarts included.
const ctlTimeout = 2 * time.Minute

// ctlMaxResponse bounds what is read of a response (10000 log lines fit).
const ctlMaxResponse = 32 << 20

// ctlCommand is one request of `hardvisor ctl` and how its answer is shown.
type ctlCommand struct {
	method, path string
	query        url.Values
	body         any
	show         func(w io.Writer, body []byte) error
}

// runCtl is `hardvisor ctl … COMMAND`: one request to a host's management
// API over mutual TLS, its answer shown as a table or, with --json, as the
// server sent it.
func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ctl", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, ctlUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	endpoint := fs.String("endpoint", "", "the host's management API, https://HOST[:PORT] (default port "+ctlDefaultPort+")")
	certPath := fs.String("cert", "", "client certificate, PEM (hardvisor pki issue)")
	keyPath := fs.String("key", "", "the client certificate's private key, PEM")
	caPath := fs.String("ca", "", "CA certificate to check the server's against, PEM")
	asJSON := fs.Bool("json", false, "print the server's JSON as it is")
	lines := fs.Int("lines", 0, fmt.Sprintf("logs: how many lines, 1 to %d (default %d)", api.MaxLogLines, api.DefaultLogLines))
	after := fs.Uint64("after", 0, "audit: the records after this seq")
	limit := fs.Int("limit", 0, fmt.Sprintf("audit: at most this many records, 1 to %d (default %d)", api.MaxAuditLimit, api.DefaultAuditLimit))
	pos, help, err := parseInterspersed(fs, args)
	if err != nil || help {
		return err
	}
	if len(pos) == 0 {
		return &UsageError{Msg: "ctl: no command given\n" + ctlUsage}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cmd, err := ctlParse(pos, set, *lines, *after, *limit)
	if err != nil {
		return err
	}
	var missing []string
	for _, f := range []struct{ name, val string }{{"endpoint", *endpoint}, {"cert", *certPath}, {"key", *keyPath}, {"ca", *caPath}} {
		if f.val == "" {
			missing = append(missing, "--"+f.name)
		}
	}
	if len(missing) > 0 {
		return &UsageError{Msg: fmt.Sprintf("ctl: %s required\n%s", strings.Join(missing, ", "), ctlUsage)}
	}
	base, err := ctlEndpoint(*endpoint)
	if err != nil {
		return err
	}
	client, err := ctlClient(base.Hostname(), *certPath, *keyPath, *caPath)
	if err != nil {
		return fmt.Errorf("ctl: %w", err)
	}
	defer client.CloseIdleConnections()
	body, err := ctlDo(ctx, client, base, cmd)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	if err := cmd.show(stdout, body); err != nil {
		return fmt.Errorf("ctl: %w", err)
	}
	return nil
}

// ctlParse turns COMMAND and its arguments into a request. set names the
// flags given, each of which must belong to the command.
func ctlParse(pos []string, set map[string]bool, lines int, after uint64, limit int) (*ctlCommand, error) {
	name, args := pos[0], pos[1:]
	var c *ctlCommand
	switch name {
	case "status":
		c = &ctlCommand{method: http.MethodGet, path: "/v1/status", show: ctlShowStatus}
	case "services":
		c = &ctlCommand{method: http.MethodGet, path: "/v1/services", show: ctlShowServices}
	case "network":
		c = &ctlCommand{method: http.MethodGet, path: "/v1/network", show: ctlShowNetwork}
	case "logs":
		c = &ctlCommand{method: http.MethodGet, path: "/v1/services/%s/logs", show: ctlShowLogs}
		if set["lines"] {
			c.query = url.Values{"lines": {strconv.Itoa(lines)}}
		}
	case "restart":
		c = &ctlCommand{method: http.MethodPost, path: "/v1/services/%s/restart", show: ctlShowRestart}
	case "audit":
		c = &ctlCommand{method: http.MethodGet, path: "/v1/audit", query: url.Values{}, show: ctlShowAudit}
		if set["after"] {
			c.query.Set("after", strconv.FormatUint(after, 10))
		}
		if set["limit"] {
			c.query.Set("limit", strconv.Itoa(limit))
		}
	case status.PowerReboot, status.PowerPoweroff:
		c = &ctlCommand{method: http.MethodPost, path: "/v1/power", body: api.PowerRequest{Action: name}, show: ctlShowPower}
	case "guests":
		c = &ctlCommand{method: http.MethodGet, path: "/v1/guests", show: ctlShowGuests}
	case "guest":
		var err error
		if c, err = ctlGuest(args); err != nil {
			return nil, err
		}
		args = nil
	default:
		return nil, &UsageError{Msg: fmt.Sprintf("ctl: unknown command %q\n%s", name, ctlUsage)}
	}
	// A service command's path has a place for the one argument, NAME.
	if perService := strings.Contains(c.path, "%s"); perService {
		if len(args) != 1 {
			return nil, &UsageError{Msg: "usage: hardvisor ctl [flags] " + name + " NAME"}
		}
		c.path = fmt.Sprintf(c.path, url.PathEscape(args[0]))
	} else if len(args) != 0 {
		return nil, &UsageError{Msg: fmt.Sprintf("ctl: %s: unexpected argument %q", name, args[0])}
	}
	for _, f := range []struct{ flag, cmd string }{{"lines", "logs"}, {"after", "audit"}, {"limit", "audit"}} {
		if set[f.flag] && name != f.cmd {
			return nil, &UsageError{Msg: fmt.Sprintf("ctl: --%s is for %s, not %s", f.flag, f.cmd, name)}
		}
	}
	return c, nil
}

// ctlGuest is `guest NAME [VERB]`: the guest's status, its console, or
// an action on it.
func ctlGuest(args []string) (*ctlCommand, error) {
	const usage = "usage: hardvisor ctl [flags] guest NAME [start|stop|restart|console]"
	if len(args) < 1 || len(args) > 2 || args[0] == "" {
		return nil, &UsageError{Msg: usage}
	}
	path := "/v1/guests/" + url.PathEscape(args[0])
	verb := ""
	if len(args) == 2 {
		verb = args[1]
	}
	switch verb {
	case "":
		return &ctlCommand{method: http.MethodGet, path: path, show: ctlShowGuest}, nil
	case "console":
		return &ctlCommand{method: http.MethodGet, path: path + "/console", show: ctlShowConsole}, nil
	case "start", "stop", "restart":
		return &ctlCommand{method: http.MethodPost, path: path + "/" + verb, show: ctlShowGuestAction(verb)}, nil
	}
	return nil, &UsageError{Msg: fmt.Sprintf("ctl: guest %s: unknown action %q\n%s", args[0], verb, usage)}
}

// ctlEndpoint checks --endpoint: https, a host, nothing after it.
func ctlEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" {
		return nil, &UsageError{Msg: fmt.Sprintf("ctl: --endpoint %q: want https://HOST[:PORT]", s)}
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), ctlDefaultPort)
	}
	return &url.URL{Scheme: "https", Host: host}, nil
}

// ctlClient is an HTTPS client with the client certificate, checking the
// server's certificate against the CA for serverName.
func ctlClient(serverName, certPath, keyPath, caPath string) (*http.Client, error) {
	var pems [3][]byte
	for i, p := range []string{certPath, keyPath, caPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pems[i] = b
	}
	cfg, err := pki.ClientTLSConfig(pems[0], pems[1], pems[2], serverName)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: ctlTimeout, Transport: &http.Transport{TLSClientConfig: cfg, TLSHandshakeTimeout: 10 * time.Second}}, nil
}

// ctlDo sends the request and returns the body of a 2xx answer; any other
// is an error with the server's message: "ctl: 403 Forbidden: …".
func ctlDo(ctx context.Context, client *http.Client, base *url.URL, c *ctlCommand) ([]byte, error) {
	u := *base
	u.Path = c.path
	u.RawQuery = c.query.Encode()
	var body io.Reader
	if c.body != nil {
		b, err := json.Marshal(c.body)
		if err != nil {
			return nil, fmt.Errorf("ctl: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("ctl: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ctl: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, ctlMaxResponse))
	if err != nil {
		return nil, fmt.Errorf("ctl: %s %s: %w", c.method, u.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		var e api.ErrorReply
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, fmt.Errorf("ctl: %d %s: %s", resp.StatusCode, http.StatusText(resp.StatusCode), msg)
	}
	return data, nil
}

func ctlDecode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("server's answer: %w", err)
	}
	return nil
}

func ctlShowStatus(w io.Writer, body []byte) error {
	var r status.Report
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	return r.WriteText(w)
}

func ctlShowServices(w io.Writer, body []byte) error {
	var svcs []status.Service
	if err := ctlDecode(body, &svcs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUSER\tRESTARTS\tLAST-EXIT\tMEMORY\tTASKS")
	for _, s := range svcs {
		pid := "-"
		if s.Pid > 0 {
			pid = strconv.Itoa(s.Pid)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%.1fMiB\t%d\n", s.Name, s.State, pid, s.User(), s.Restarts, ctlDash(s.LastExit),
			float64(s.Memory)/(1<<20), s.PIDs)
	}
	return tw.Flush()
}

func ctlShowLogs(w io.Writer, body []byte) error {
	var r api.LogsReply
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	for _, l := range r.Lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

func ctlShowRestart(w io.Writer, body []byte) error {
	var r api.RestartReply
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "restart %s: accepted\n", r.Service)
	return err
}

func ctlShowPower(w io.Writer, body []byte) error {
	var r api.PowerReply
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: accepted\n", r.Action)
	return err
}

func ctlShowNetwork(w io.Writer, body []byte) error {
	var n *status.Network
	if err := ctlDecode(body, &n); err != nil {
		return err
	}
	if n == nil {
		_, err := fmt.Fprintln(w, "network: not laid out yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ns := ctlDash(n.Namespace)
	if len(n.NamespaceLinks) > 0 {
		ns += " [" + strings.Join(n.NamespaceLinks, " ") + "]"
	}
	fmt.Fprintf(tw, "namespace:\t%s\n", ns)
	fmt.Fprintf(tw, "nic:\t%s\n", ctlDash(n.MgmtNIC))
	if n.MgmtNIC != "" {
		addr, how := n.Address, "static"
		if addr == "" {
			addr = "no address yet"
		}
		if n.DHCP {
			how = "dhcp"
		}
		fmt.Fprintf(tw, "address:\t%s (%s)\n", addr, how)
		fmt.Fprintf(tw, "gateway:\t%s\n", ctlDash(n.Gateway))
	}
	for _, b := range n.Bridges {
		fmt.Fprintf(tw, "bridge:\t%s\n", b)
	}
	if len(n.Down) > 0 {
		fmt.Fprintf(tw, "down:\t%s\n", strings.Join(n.Down, " "))
	}
	return tw.Flush()
}

func ctlShowAudit(w io.Writer, body []byte) error {
	var r api.AuditReply
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tROLE\tREMOTE\tACTION\tTARGET\tALLOWED\tSTATUS\tDETAIL")
	for _, rec := range r.Records {
		allowed := "no"
		if rec.Allowed {
			allowed = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", rec.Seq, rec.Time.UTC().Format(time.RFC3339), ctlDash(rec.Actor),
			ctlDash(rec.Role), ctlDash(rec.Remote), ctlDash(rec.Action), ctlDash(rec.Target), allowed, rec.Status, rec.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	head := r.Head.Hash
	if r.Head.Seq == 0 && head == audit.Genesis {
		head += " (empty log)"
	}
	_, err := fmt.Fprintf(w, "head: seq %d, hash %s\n", r.Head.Seq, head)
	return err
}

func ctlDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ctlShowGuests(w io.Writer, body []byte) error {
	var r vmm.ListReply
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tLABEL\tCPU\tMEMORY\tRESTARTS\tERROR")
	for _, g := range r.Guests {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", g.Name, ctlGuestState(g), ctlNumber(g.PID), ctlDash(g.Label),
			ctlCPUMax(g.Want.CPUMax), ctlMemoryMax(g.Want.MemoryMax), g.Restarts, ctlDash(g.Error))
	}
	return tw.Flush()
}

func ctlShowGuest(w io.Writer, body []byte) error {
	var g vmm.Status
	if err := ctlDecode(body, &g); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	autostart := "no"
	if g.Autostart {
		autostart = "yes"
	}
	pid := ctlNumber(g.PID)
	if g.ID > 0 {
		pid += fmt.Sprintf(" (domain %d)", g.ID)
	}
	nic := "-"
	if g.Tap != "" || g.Bridge != "" {
		nic = ctlDash(g.Tap) + " on " + ctlDash(g.Bridge)
		if g.VID > 0 {
			nic += fmt.Sprintf(", vlan %d", g.VID)
		}
	}
	since := "-"
	if !g.Since.IsZero() {
		since = g.Since.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "name:\t%s\n", g.Name)
	fmt.Fprintf(tw, "state:\t%s\n", ctlGuestState(g))
	fmt.Fprintf(tw, "since:\t%s\n", since)
	fmt.Fprintf(tw, "autostart:\t%s\n", autostart)
	fmt.Fprintf(tw, "pid:\t%s\n", pid)
	fmt.Fprintf(tw, "label:\t%s\n", ctlDash(g.Label))
	fmt.Fprintf(tw, "nic:\t%s\n", nic)
	fmt.Fprintf(tw, "cgroup:\t%s\n", ctlDash(g.Cgroup))
	fmt.Fprintf(tw, "restarts:\t%d\n", g.Restarts)
	fmt.Fprintf(tw, "error:\t%s\n", ctlDash(g.Error))
	if err := tw.Flush(); err != nil {
		return err
	}
	// The ceilings as they should be and, while there is a cgroup, as
	// read back: a difference is one of the guest's errors.
	var got vmm.Ceilings
	if g.Ceilings != nil {
		got = *g.Ceilings
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CEILING\tWANT\tNOW")
	for _, c := range []struct{ name, want, got string }{
		{"cpu.max", g.Want.CPUMax, got.CPUMax},
		{"cpu.weight", g.Want.CPUWeight, got.CPUWeight},
		{"memory.max", g.Want.MemoryMax, got.MemoryMax},
		{"io.max", g.Want.IOMax, got.IOMax},
		{"pids.max", g.Want.PIDsMax, got.PIDsMax},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.name, ctlDash(c.want), ctlDash(c.got))
	}
	return tw.Flush()
}

func ctlShowGuestAction(verb string) func(io.Writer, []byte) error {
	return func(w io.Writer, body []byte) error {
		var g vmm.Status
		if err := ctlDecode(body, &g); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "%s %s: %s\n", verb, g.Name, ctlGuestState(g))
		return err
	}
}

func ctlShowConsole(w io.Writer, body []byte) error {
	var r api.ConsoleReply
	if err := ctlDecode(body, &r); err != nil {
		return err
	}
	text := ctlTerminalSafe(r.Console)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	_, err := io.WriteString(w, text)
	return err
}

// ctlGuestState is a guest's state with its reason, and whether vmm gave
// up on it: "shutoff (crashed), failed".
func ctlGuestState(g vmm.Status) string {
	s := ctlDash(g.State)
	if g.Reason != "" {
		s += " (" + g.Reason + ")"
	}
	if g.Failed {
		s += ", failed"
	}
	return s
}

// ctlCPUMax is a cpu.max ("QUOTA PERIOD") as the share of one CPU that
// config's limits.cpu gives: "200%"; "max" without a ceiling.
func ctlCPUMax(s string) string {
	quota, period, ok := strings.Cut(s, " ")
	if quota == "max" {
		return "max"
	}
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if !ok || err1 != nil || err2 != nil || p <= 0 {
		return ctlDash(s)
	}
	return strconv.FormatInt(q*100/p, 10) + "%"
}

// ctlMemoryMax is a memory.max in bytes as config writes sizes: "4Gi".
func ctlMemoryMax(s string) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return ctlDash(s)
	}
	return config.Size(n).String()
}

func ctlNumber(n int) string {
	if n <= 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// ctlTerminalSafe makes a guest's console text safe to print on the
// operator's terminal: the guest writes it, and a guest is not trusted.
// Colour and cursor sequences (CSI) are dropped, "\r\n" becomes "\n",
// and any other control character, bidirectional override or byte that is
// not UTF-8 is shown escaped ("\x07", "\u202e"); newlines and tabs stay.
func ctlTerminalSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\x1b' && i+1 < len(s) && s[i+1] == '[':
			// ESC [, parameter and intermediate bytes, one final byte.
			j := i + 2
			for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
				j++
			}
			if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
				i = j + 1
				continue
			}
			b.WriteString(`\x1b`)
		case r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x100 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.Is(unicode.Bidi_Control, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
