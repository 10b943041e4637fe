package supervise

import (
	"bytes"
	"fmt"
	"io"
	"sync"
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
	if w.console != nil {
		w.conMu.Lock()
		fmt.Fprintf(w.console, "%s: %s\n", w.name, s)
		w.conMu.Unlock()
	}
}
