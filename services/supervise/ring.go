package supervise

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Log bounds.
const (
	// DefaultLogBytes is how much of a service's output is kept.
	DefaultLogBytes = 64 << 10
	// maxLine is the longest line kept whole; longer ones are split.
	maxLine = 4 << 10
)

// ring keeps the last lines of a service's output within a byte budget.
type ring struct {
	mu    sync.Mutex
	max   int
	lines []string // oldest first, from head
	head  int
	bytes int
}

func newRing(max int) *ring { return &ring{max: max} }

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	r.bytes += len(line) + 1
	for r.bytes > r.max && len(r.lines)-r.head > 1 {
		r.bytes -= len(r.lines[r.head]) + 1
		r.lines[r.head] = ""
		r.head++
	}
	// Compact once the dropped prefix dominates, keeping appends amortized O(1).
	if r.head > len(r.lines)/2 {
		r.lines = append(r.lines[:0], r.lines[r.head:]...)
		r.head = 0
	}
}

// last gives the last n lines, oldest first; all kept lines when n <= 0.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.lines[r.head:]
	if n > 0 && n < len(kept) {
		kept = kept[len(kept)-n:]
	}
	return append([]string(nil), kept...)
}

// lineWriter splits a stream into lines, keeps each in the ring and
// forwards it to the console as "name: line".
type lineWriter struct {
	name    string
	ring    *ring
	console io.Writer
	conMu   *sync.Mutex // shared by every service writing to the console
	limit   *rateLimit  // the service's console rate, kept across runs; under conMu
	now     func() time.Time
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			for len(w.partial) >= maxLine {
				w.emit(w.partial[:maxLine])
				w.partial = append(w.partial[:0], w.partial[maxLine:]...)
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		p = p[i+1:]
		for len(w.partial) > maxLine {
			w.emit(w.partial[:maxLine])
			w.partial = w.partial[maxLine:]
		}
		w.emit(w.partial)
		w.partial = w.partial[:0]
	}
	return n, nil
}

// flush emits a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
}

func (w *lineWriter) emit(line []byte) {
	s := string(bytes.TrimSuffix(line, []byte("\r")))
	w.ring.add(s)
	if w.console == nil {
		return
	}
	w.conMu.Lock()
	defer w.conMu.Unlock()
	ok, dropped := w.limit.allow(w.now())
	if !ok {
		return
	}
	if dropped > 0 {
		fmt.Fprintf(w.console, "%s: (%d lines not shown on the console; the service's log has them)\n", w.name, dropped)
	}
	fmt.Fprintf(w.console, "%s: %s\n", w.name, s)
}

// Console rate limit per service: a burst of ConsoleBurst lines, then
// ConsoleRate lines a second. A service that floods its output cannot
// drown the console (a serial line takes ~1 ms a character under TCG)
// or the other services' lines; its log keeps everything.
const (
	ConsoleBurst = 200
	ConsoleRate  = 20
)

// rateLimit is a token bucket; the zero value starts full.
type rateLimit struct {
	tokens  float64
	last    time.Time
	dropped int
	started bool
}

// allow takes a token at now; when it may, it also gives the count of
// lines refused since the last one allowed.
func (r *rateLimit) allow(now time.Time) (ok bool, dropped int) {
	if !r.started {
		r.tokens, r.last, r.started = ConsoleBurst, now, true
	}
	r.tokens = min(ConsoleBurst, r.tokens+now.Sub(r.last).Seconds()*ConsoleRate)
	r.last = now
	if r.tokens < 1 {
		r.dropped++
		return false, 0
	}
	r.tokens--
	dropped, r.dropped = r.dropped, 0
	return true, dropped
}
