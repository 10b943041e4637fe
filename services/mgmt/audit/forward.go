package audit

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Syslog facilities a Forwarder may send as (RFC 5424 section 6.2.1).
const (
	// FacilityAuthpriv is security/authorization messages, the default.
	FacilityAuthpriv = 10
	// FacilityLocal0 is the first facility left to local use.
	FacilityLocal0 = 16
)

// AppName is the RFC 5424 APP-NAME of every forwarded record.
const AppName = "hardvisor-audit"

// ForwarderOptions configure a Forwarder. Zero values are the defaults.
type ForwarderOptions struct {
	// TLSConfig is for tls:// URLs (and an error with any other): nil is
	// the system roots and TLS 1.2 or newer; an empty ServerName is the
	// URL's host.
	TLSConfig *tls.Config
	// Hostname is the messages' HOSTNAME; "" is os.Hostname().
	Hostname string
	// Facility is the syslog facility, 1 to 23; 0 is FacilityAuthpriv (0
	// itself, kern, is not for processes).
	Facility int
	// QueueSize is how many messages wait in memory for the server, 4096
	// by default; when full, the oldest is dropped and counted.
	QueueSize int
	// MinBackoff is the wait after the first failed connect or write,
	// 100ms by default; it doubles with each failure in a row, up to
	// MaxBackoff (30s by default), and starts again after a good write.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a connect including the TLS handshake, 10s by
	// default.
	DialTimeout time.Duration
	// WriteTimeout bounds one write to the server, 10s by default.
	WriteTimeout time.Duration
	// FlushTimeout is how long Close waits for the queue to drain, 5s by
	// default.
	FlushTimeout time.Duration
	// Logger gets connection failures and recoveries; nil discards them.
	Logger *slog.Logger
}

// ForwarderStats are a Forwarder's counters.
type ForwarderStats struct {
	// Queued is the number of messages waiting for the server.
	Queued int
	// Sent is the number of messages written to the server.
	Sent uint64
	// Dropped is the number of messages dropped because the queue was
	// full or the Forwarder closed.
	Dropped uint64
	// Connected is whether a connection to the server is up.
	Connected bool
}

// Forwarder copies audit records to a remote syslog server: each record
// becomes one RFC 5424 message whose MSG is the record's line, sent over
// TCP or TLS framed by octet counting (RFC 6587: "LEN SP MSG"), or as one
// UDP datagram (RFC 5426). Forward never blocks: messages wait in a bounded
// queue while one goroutine connects, reconnects with capped exponential
// backoff and writes. A message is removed from the queue only once it was
// written, so a reconnect sends again what a failed write may have left
// half sent; the receiver can tell repeats and gaps by the seq in each
// MSG. Delivery is still best effort (a syslog receiver acknowledges
// nothing, and the queue is in memory): the local log is the record, the
// remote copy its anchor.
type Forwarder struct {
	url      string
	network  string // tcp, tls or udp
	addr     string // host:port
	tlsConf  *tls.Config
	opts     ForwarderOptions
	hostname string
	log      *slog.Logger

	ctx     context.Context // cancelled when Close gives up flushing
	cancel  context.CancelFunc
	wake    chan struct{}
	stopped chan struct{} // closed when run returns

	mu      sync.Mutex
	queue   [][]byte // framed messages, oldest first
	first   uint64   // number of queue[0] among all messages ever queued
	sent    uint64
	dropped uint64
	conn    *stream // current connection, nil when none
	closing bool
}

// NewForwarder starts a Forwarder to rawURL: tcp://host[:port] (port 601
// by default), tls://host[:port] (6514) or udp://host[:port] (514). It
// connects in the background; a server that is down is not an error here.
func NewForwarder(rawURL string, opts ForwarderOptions) (*Forwarder, error) {
	network, host, port, err := parseSyslogURL(rawURL)
	if err != nil {
		return nil, err
	}
	var conf *tls.Config
	switch {
	case network == "tls":
		if conf = opts.TLSConfig.Clone(); conf == nil {
			conf = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if conf.ServerName == "" {
			conf.ServerName = host
		}
	case opts.TLSConfig != nil:
		return nil, fmt.Errorf("syslog %s: a TLS config is given but the URL is not tls://", rawURL)
	}
	switch {
	case opts.Facility == 0:
		opts.Facility = FacilityAuthpriv
	case opts.Facility < 1 || opts.Facility > 23:
		return nil, fmt.Errorf("syslog %s: facility %d: want 1 to 23", rawURL, opts.Facility)
	}
	setDefault(&opts.QueueSize, 4096)
	setDefault(&opts.MinBackoff, 100*time.Millisecond)
	setDefault(&opts.MaxBackoff, 30*time.Second)
	setDefault(&opts.DialTimeout, 10*time.Second)
	setDefault(&opts.WriteTimeout, 10*time.Second)
	setDefault(&opts.FlushTimeout, 5*time.Second)
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	hostname := opts.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{
		url: rawURL, network: network, addr: net.JoinHostPort(host, port), tlsConf: conf, opts: opts,
		hostname: hostname, log: log,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	go f.run()
	return f, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// parseSyslogURL splits a syslog URL, with the scheme's port when it names
// none. config's management.syslog check accepts the same URLs.
func parseSyslogURL(s string) (network, host, port string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" || u.User != nil || u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", "", fmt.Errorf("syslog URL %q: want tcp://, tls:// or udp://host[:port]", s)
	}
	def, ok := map[string]string{"tcp": "601", "tls": "6514", "udp": "514"}[u.Scheme]
	if !ok {
		return "", "", "", fmt.Errorf("syslog URL %q: want tcp://, tls:// or udp://host[:port]", s)
	}
	port = u.Port()
	if port == "" {
		port = def
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", "", fmt.Errorf("syslog URL %q: port %s: want 1 to 65535", s, port)
	}
	return u.Scheme, u.Hostname(), port, nil
}

// Forward queues r, whose line is line, for the server and returns at once.
// Its signature fits Options.Forward.
func (f *Forwarder) Forward(r Record, line []byte) {
	msg := message(r, line, f.opts.Facility, f.hostname)
	if f.network != "udp" {
		framed := strconv.AppendInt(make([]byte, 0, len(msg)+8), int64(len(msg)), 10)
		msg = append(append(framed, ' '), msg...)
	}
	f.mu.Lock()
	if f.closing {
		f.dropped++
		f.mu.Unlock()
		return
	}
	if len(f.queue) >= f.opts.QueueSize {
		f.queue[0] = nil
		f.queue = f.queue[1:]
		f.first++
		f.dropped++
	}
	f.queue = append(f.queue, msg)
	f.mu.Unlock()
	f.poke()
}

func (f *Forwarder) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// message is r as an RFC 5424 syslog message: PRI from the facility and
// notice (allowed) or warning (denied), the record's time to the
// microsecond RFC 5424 allows, no PROCID, the action as MSGID, no
// structured data and the record's line as MSG.
func message(r Record, line []byte, facility int, hostname string) []byte {
	severity := 5
	if !r.Allowed {
		severity = 4
	}
	ts := "-"
	if !r.Time.IsZero() {
		ts = r.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	b := fmt.Appendf(nil, "<%d>1 %s %s %s - %s - ", facility*8+severity, ts, headerField(hostname, 255), AppName, headerField(r.Action, 32))
	return append(b, line...)
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n bytes, "-" (the nil value) when empty.
func headerField(s string, n int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), n)])
}

// Stats returns the Forwarder's counters.
func (f *Forwarder) Stats() ForwarderStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ForwarderStats{Queued: len(f.queue), Sent: f.sent, Dropped: f.dropped, Connected: f.conn != nil && f.conn.alive()}
}

// Close stops taking messages, waits up to FlushTimeout for the queue to be
// written and closes the connection. It returns an error naming how many
// messages were left undelivered.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	already := f.closing
	f.closing = true
	f.mu.Unlock()
	if already {
		<-f.stopped
		return nil
	}
	f.poke()
	t := time.NewTimer(f.opts.FlushTimeout)
	defer t.Stop()
	select {
	case <-f.stopped:
	case <-t.C:
	}
	f.cancel()
	<-f.stopped
	f.mu.Lock()
	n := len(f.queue)
	f.mu.Unlock()
	if n > 0 {
		return fmt.Errorf("syslog %s: %d audit message(s) not delivered within %s", f.url, n, f.opts.FlushTimeout)
	}
	return nil
}

// maxBatch bounds how many bytes one write to a stream carries.
const maxBatch = 64 << 10

// run is the Forwarder's one goroutine: it connects, writes what is queued
// and reconnects after failures, until Close.
func (f *Forwarder) run() {
	defer close(f.stopped)
	var s *stream
	defer func() {
		if s != nil {
			s.close()
		}
		f.setConn(nil)
	}()
	failures := 0
	for {
		if !f.pending() {
			return
		}
		if s != nil && !s.alive() {
			f.log.Warn("syslog server closed the connection", "server", f.url)
			s.close()
			s = nil
			f.setConn(nil)
		}
		if s == nil {
			c, err := f.dial()
			if err != nil {
				failures++
				d := f.backoff(failures)
				f.log.Warn("connect to syslog server failed", "server", f.url, "err", err, "retry_in", d)
				if !f.sleep(d) {
					return
				}
				continue
			}
			s = c
			f.setConn(s)
			f.log.Info("connected to syslog server", "server", f.url)
		}
		// Taken only now, connected: what waited through a failure is
		// what the queue still holds, not what it held before.
		id, batch := f.batch()
		if err := s.write(batch, f.network == "udp", f.opts.WriteTimeout); err != nil {
			failures++
			d := f.backoff(failures)
			f.log.Warn("write to syslog server failed", "server", f.url, "err", err, "retry_in", d)
			s.close()
			s = nil
			f.setConn(nil)
			if !f.sleep(d) {
				return
			}
			continue
		}
		failures = 0
		f.written(id, len(batch))
	}
}

// pending waits until messages are queued and reports true, or false when
// the Forwarder is done.
func (f *Forwarder) pending() bool {
	for {
		if f.ctx.Err() != nil {
			return false
		}
		f.mu.Lock()
		n, closing := len(f.queue), f.closing
		f.mu.Unlock()
		if n > 0 {
			return true
		}
		if closing {
			return false
		}
		select {
		case <-f.wake:
		case <-f.ctx.Done():
		}
	}
}

// batch returns the oldest queued messages, up to maxBatch bytes (at least
// one), and the number of the first among all ever queued. Only run takes
// messages off the queue, so after pending there is at least one.
func (f *Forwarder) batch() (id uint64, batch [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, size := 1, len(f.queue[0])
	for n < len(f.queue) && size+len(f.queue[n]) <= maxBatch {
		size += len(f.queue[n])
		n++
	}
	return f.first, slices.Clone(f.queue[:n])
}

// written removes the n messages from number id on from the queue, those
// of them that the queue did not drop meanwhile.
func (f *Forwarder) written(id uint64, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent += uint64(n)
	if end := id + uint64(n); end > f.first {
		k := int(end - f.first)
		clear(f.queue[:k])
		f.queue = f.queue[k:]
		f.first = end
	}
}

func (f *Forwarder) setConn(s *stream) {
	f.mu.Lock()
	f.conn = s
	f.mu.Unlock()
}

// backoff is the wait after the n-th failure in a row.
func (f *Forwarder) backoff(n int) time.Duration {
	d := f.opts.MinBackoff
	for i := 1; i < n && d < f.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, f.opts.MaxBackoff)
}

// sleep waits d, or less when Close gives up; it reports whether to go on.
func (f *Forwarder) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.ctx.Done():
		return false
	}
}

func (f *Forwarder) dial() (*stream, error) {
	d := &net.Dialer{Timeout: f.opts.DialTimeout}
	var c net.Conn
	var err error
	if f.tlsConf != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: f.tlsConf}).DialContext(f.ctx, "tcp", f.addr)
	} else {
		c, err = d.DialContext(f.ctx, f.network, f.addr)
	}
	if err != nil {
		return nil, err
	}
	s := &stream{conn: c, dead: make(chan struct{})}
	s.stop = context.AfterFunc(f.ctx, func() { c.Close() })
	if f.network != "udp" {
		go s.watch()
	}
	return s, nil
}

// stream is one connection to the server.
type stream struct {
	conn net.Conn
	dead chan struct{} // closed when the connection can no longer be read
	stop func() bool   // undoes the close-on-cancel
}

// watch reads the connection, on which a syslog server sends nothing,
// until it fails: so a server that closed the connection is noticed before
// a write would vanish into it.
func (s *stream) watch() {
	defer close(s.dead)
	buf := make([]byte, 512)
	for {
		if _, err := s.conn.Read(buf); err != nil {
			return
		}
	}
}

func (s *stream) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

func (s *stream) write(batch [][]byte, datagrams bool, timeout time.Duration) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if datagrams {
		for _, m := range batch {
			if _, err := s.conn.Write(m); err != nil {
				return err
			}
		}
		return nil
	}
	bufs := net.Buffers(batch)
	_, err := bufs.WriteTo(s.conn)
	return err
}

func (s *stream) close() {
	s.stop()
	s.conn.Close()
}
