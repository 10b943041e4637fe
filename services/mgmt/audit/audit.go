// Package audit is the management API's audit log: an append-only file with
// one record for every request that changed something and every denied
// request, each record naming the hash of the one before it, so that Verify
// finds any record that was edited, deleted, inserted or moved; and a
// Forwarder that copies every record to a remote syslog server as it is
// written.
//
// # File format
//
// The file is JSON Lines: one record per line, every line ended by "\n"
// (LF), nothing else in the file. A line is the canonical encoding of its
// Record: what encoding/json's Marshal writes for the struct, that is all
// members always present, in the order of the struct's fields, no
// whitespace between tokens, strings escaped as encoding/json escapes them
// (", \ and control characters, and also <, > and & as \u003c, \u003e and
// \u0026; invalid UTF-8 replaced by U+FFFD), time as RFC 3339 in UTC ("Z")
// with up to nine fractional digits and trailing zeros dropped (Go's
// time.RFC3339Nano). For example (wrapped here; one line in the file):
//
//	{"seq":1,"time":"2024-05-01T12:00:00.000000001Z","actor":"alice","role":"admin",
//	"remote":"192.0.2.7:50122","method":"POST","path":"/v1/services/libvirtd/restart",
//	"action":"services.restart","target":"libvirtd","allowed":true,"status":200,"detail":"",
//	"prev":"0000000000000000000000000000000000000000000000000000000000000000",
//	"hash":"<64 lowercase hex digits>"}
//
// seq counts from 1 and goes up by exactly 1 a line. prev is the hash of the
// record on the line before; the first record's prev is 64 zeros. hash is
// the lowercase hex SHA-256 of the line without its hash member: hash is
// always the last member, so that is the line with its final
// `,"hash":"<64 hex digits>"}` replaced by `}`, which is also exactly Marshal
// of the record with Hash empty (the member is omitted when empty). Another
// tool verifies a log by doing just that for each line, checking that prev
// is the previous line's hash and that seq goes up by one; for example in
// Python, for a line b without its newline:
//
//	hashlib.sha256(b[:-len(b',"hash":"') - 66] + b"}").hexdigest() == json.loads(b)["hash"]
//
// Verify also requires each line to be byte for byte the canonical encoding
// of what it parses to, so no two JSON readers can disagree about a
// verified line (duplicate or unknown members, other spellings of the same
// value).
//
// # What the chain proves, and what it does not
//
// An edited record no longer matches its own hash; an edited record whose
// hash was recomputed no longer matches the next record's prev; a deleted,
// inserted or moved record breaks the seq sequence. But the chain has no
// secret: whoever can write the file can also recompute every hash from the
// record they changed to the end, and removing the newest records leaves a
// valid, shorter chain. So a chain alone proves only that the log is
// consistent; that it is the log that was written needs an anchor kept
// elsewhere: the copies the Forwarder sent to the remote syslog server (each
// carries its seq, prev and hash) and the head (seq and hash of the newest
// record, Log.Head) that the API reports and monitoring records.
// VerifyAgainst checks a log against such an anchor.
//
// Open verifies the whole file before it appends anything and refuses a
// broken log, including one whose last line was cut short by a crash in the
// middle of a write: the log is evidence, and repairing it is a decision for
// a person, not for the service.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Record is one entry of the audit log. Seq, Time, Prev and Hash are filled
// by Log.Append; the rest describes the request.
type Record struct {
	// Seq is the record's number, from 1, one more than the record before.
	Seq uint64 `json:"seq"`
	// Time is when the record was appended, in UTC.
	Time time.Time `json:"time"`
	// Actor is the client certificate's CommonName, "" when the client
	// presented none.
	Actor string `json:"actor"`
	// Role is the role the client was given (viewer, operator, admin), ""
	// when none.
	Role string `json:"role"`
	// Remote is the client's address, host:port.
	Remote string `json:"remote"`
	// Method is the HTTP method.
	Method string `json:"method"`
	// Path is the request path.
	Path string `json:"path"`
	// Action is a short verb for what was asked, such as "services.restart".
	Action string `json:"action"`
	// Target is what it was asked of, such as a service or guest name.
	Target string `json:"target"`
	// Allowed is whether the request was permitted.
	Allowed bool `json:"allowed"`
	// Status is the HTTP status of the response.
	Status int `json:"status"`
	// Detail is free text, such as why a request was denied; may be empty.
	Detail string `json:"detail"`
	// Prev is the Hash of the record before, 64 zeros for the first.
	Prev string `json:"prev"`
	// Hash is the lowercase hex SHA-256 of the record's canonical encoding
	// without this member (see the package documentation).
	Hash string `json:"hash,omitempty"`
}

// Genesis is the prev of the first record, and the head of an empty log.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// indexStride is how many records apart Log remembers a file offset, so
// that Records reads from near the page asked for instead of the start.
var indexStride = 1024

// Options configure a Log.
type Options struct {
	// Now is the clock for record times; nil is time.Now.
	Now func() time.Time
	// Forward, when set, is given each record and its line (without the
	// newline; not reused) once the record is on disk. It is called in seq
	// order with the log's lock held, so it must not block:
	// (*Forwarder).Forward queues and returns.
	Forward func(r Record, line []byte)
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	path string
	opts Options

	mu    sync.Mutex
	f     *os.File // nil once closed
	seq   uint64   // newest record's seq, 0 when empty
	head  string   // newest record's hash, Genesis when empty
	size  int64    // bytes of whole, verified records
	index []mark   // index[k] is the record with seq k*indexStride+1
	err   error    // set when the file may no longer end where the chain does
}

// mark is where a record starts in the file and the hash before it.
type mark struct {
	seq  uint64
	off  int64
	prev string
}

// Open opens the audit log at path, creating it (mode 0600, its directory
// 0700) if it does not exist. An existing log is verified first, all of it:
// Open refuses to append to a broken chain and returns an error that says
// where it breaks. The file is locked against a second Open, in this
// process or another, until Close.
func Open(path string, opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l := &Log{path: path, opts: opts, f: f, head: Genesis}
	c := checker{head: Genesis}
	err = scan(f, &c, func(r Record, off int64, n int) bool {
		if (r.Seq-1)%uint64(indexStride) == 0 {
			l.index = append(l.index, mark{seq: r.Seq, off: off, prev: r.Prev})
		}
		l.size = off + int64(n)
		return true
	})
	if err != nil {
		f.Close()
		var ce *ChainError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("open audit log %s: refusing to append to a broken chain: %w", path, err)
		}
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l.seq, l.head = c.seq, c.head
	if l.size == 0 {
		// The file may just have been created: make its directory entry
		// durable too, or the first records could vanish with it.
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("open audit log %s: %w", path, err)
		}
	}
	return l, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Append writes r as the next record and returns it as stored: Seq, Time,
// Prev and Hash are filled in (whatever the caller put there is replaced)
// and strings are as encoding/json wrote them. The line is written with one
// write and fsynced before Append returns and before Options.Forward sees
// it. After a failure that may have left part of a line in the file, the
// log refuses further appends until it is opened again (and so verified).
func (l *Log) Append(r Record) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return Record{}, fmt.Errorf("audit log %s: closed", l.path)
	}
	if l.err != nil {
		return Record{}, fmt.Errorf("audit log %s: unusable after an earlier failure, open it again: %w", l.path, l.err)
	}
	fi, err := l.f.Stat()
	if err != nil {
		return Record{}, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	if fi.Size() != l.size {
		l.err = fmt.Errorf("the file is %d bytes, not the %d written through this log: it was changed by someone else", fi.Size(), l.size)
		return Record{}, fmt.Errorf("audit log %s: %w", l.path, l.err)
	}
	r.Seq = l.seq + 1
	r.Time = l.opts.Now().UTC()
	r.Prev = l.head
	// A request can carry any bytes (a path of %FF); encoding/json would
	// write invalid UTF-8 as an escape its own decoder does not give back,
	// and the line would not be canonical. Replace it first.
	for _, f := range []*string{&r.Actor, &r.Role, &r.Remote, &r.Method, &r.Path, &r.Action, &r.Target, &r.Detail} {
		*f = strings.ToValidUTF8(*f, "\uFFFD")
	}
	buf, err := seal(&r)
	if err != nil {
		return Record{}, fmt.Errorf("audit log %s: encode record %d: %w", l.path, r.Seq, err)
	}
	line := buf[:len(buf)-1]
	var stored Record
	if err := json.Unmarshal(line, &stored); err != nil {
		return Record{}, fmt.Errorf("audit log %s: encode record %d: %w", l.path, r.Seq, err)
	}
	if _, err := l.f.Write(buf); err != nil {
		if terr := l.f.Truncate(l.size); terr != nil {
			l.err = fmt.Errorf("write record %d: %w; cutting off the partial line: %w", r.Seq, err, terr)
		}
		return Record{}, fmt.Errorf("audit log %s: write record %d: %w", l.path, r.Seq, err)
	}
	if err := l.f.Sync(); err != nil {
		// Whether the line is on disk is unknown: only a new Open, which
		// reads the file, can tell what the chain's head is.
		l.err = fmt.Errorf("fsync record %d: %w", r.Seq, err)
		return Record{}, fmt.Errorf("audit log %s: %w", l.path, l.err)
	}
	if (r.Seq-1)%uint64(indexStride) == 0 {
		l.index = append(l.index, mark{seq: r.Seq, off: l.size, prev: r.Prev})
	}
	l.seq, l.head = r.Seq, r.Hash
	l.size += int64(len(buf))
	if l.opts.Forward != nil {
		l.opts.Forward(stored, line)
	}
	return stored, nil
}

// Head returns the newest record's seq and hash: 0 and Genesis for an empty
// log. It is the anchor VerifyAgainst checks a copy of the log against.
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Records returns up to limit records with seq greater than afterSeq, in
// order; none when afterSeq is the head or past it. To page through the
// log, pass the last seq of one page as afterSeq of the next. The records
// read are verified again (hash, seq, prev), so a file changed since Open
// is reported as an error rather than served.
func (l *Log) Records(afterSeq uint64, limit int) ([]Record, error) {
	if limit < 1 {
		return nil, fmt.Errorf("audit log %s: limit %d: want at least 1", l.path, limit)
	}
	l.mu.Lock()
	f, size, head, index := l.f, l.size, l.seq, l.index
	l.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("audit log %s: closed", l.path)
	}
	if afterSeq >= head {
		return nil, nil
	}
	m := index[afterSeq/uint64(indexStride)]
	c := checker{line: int(m.seq - 1), seq: m.seq - 1, head: m.prev}
	var out []Record
	err := scan(io.NewSectionReader(f, m.off, size-m.off), &c, func(r Record, _ int64, _ int) bool {
		if r.Seq > afterSeq {
			out = append(out, r)
		}
		return len(out) < limit
	})
	var ce *ChainError
	if errors.As(err, &ce) {
		return nil, fmt.Errorf("audit log %s changed since it was opened: %w", l.path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	return out, nil
}

// Close closes the log and releases its lock. Records already appended are
// on disk; Close does not close the Forwarder in Options.Forward.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close audit log %s: %w", l.path, err)
	}
	return nil
}
