package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	// MaxConsole bounds the console output a VM keeps in memory; older
	// output is dropped (the log file under HARDVISOR_TEST_LOGS keeps all).
	MaxConsole = 4 << 20
	// TailLines is how many console lines an error carries.
	TailLines = 40
	// promptIdle is how long an unterminated line must stay unchanged
	// before Expect tries it: a shell prompt never gets its newline, but a
	// line still being written must not be matched half-way (a capture
	// group would see a truncated value).
	promptIdle = 200 * time.Millisecond
)

var (
	// ErrTimeout is matched (errors.Is) by the error of an Expect or Wait
	// whose deadline passed.
	ErrTimeout = errors.New("deadline passed")
	// ErrExited is matched by the error of an Expect that could not match
	// because QEMU exited.
	ErrExited = errors.New("qemu exited")
)

// ExpectError is the error of an Expect that did not match.
type ExpectError struct {
	// VM is the VM's name.
	VM string
	// Pattern is the regular expression that did not match.
	Pattern string
	// Timeout is the deadline Expect was given.
	Timeout time.Duration
	// Exited says QEMU ended before the deadline; Status is how.
	Exited bool
	Status string
	// Tail is the last TailLines lines of the console.
	Tail string
}

// Error implements error; it carries the console tail.
func (e *ExpectError) Error() string {
	why := fmt.Sprintf("no match within %s", e.Timeout)
	if e.Exited {
		why = "qemu exited (" + e.Status + ") first"
	}
	return fmt.Sprintf("%s: waiting for /%s/: %s\n%s", e.VM, e.Pattern, why, tailBlock(e.Tail))
}

// Is makes errors.Is(err, ErrTimeout) and errors.Is(err, ErrExited) work.
func (e *ExpectError) Is(target error) bool {
	return (target == ErrExited && e.Exited) || (target == ErrTimeout && !e.Exited)
}

func tailBlock(tail string) string {
	return fmt.Sprintf("--- console, last %d lines ---\n%s\n--- end of console ---", TailLines, tail)
}

// mark records when the console had received its first end bytes.
type mark struct {
	end int64
	at  time.Time
}

// console is the serial output of a VM: appended by one reader, scanned by
// Expect from a cursor. Offsets are absolute stream positions; buf holds
// the stream from base on.
type console struct {
	mu       sync.Mutex
	buf      []byte
	base     int64
	marks    []mark
	lastData time.Time
	eof      bool
	changed  chan struct{} // closed and replaced on every append and at EOF
	cursor   int64         // where the next Expect starts
	max      int
	now      func() time.Time
}

func newConsole(max int, now func() time.Time) *console {
	return &console{changed: make(chan struct{}), max: max, now: now}
}

// readFrom copies r into the console (and into each sink) until EOF.
func (c *console) readFrom(r io.Reader, sinks ...io.Writer) {
	p := make([]byte, 32<<10)
	for {
		n, err := r.Read(p)
		if n > 0 {
			c.append(p[:n])
			for _, w := range sinks {
				if w != nil {
					w.Write(p[:n]) // a broken sink must not stop the console
				}
			}
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	c.eof = true
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *console) append(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.buf = append(c.buf, p...)
	c.lastData = now
	c.marks = append(c.marks, mark{end: c.base + int64(len(c.buf)), at: now})
	if len(c.buf) > c.max {
		// Drop a quarter at a line boundary so trimming is rare.
		cut := len(c.buf) - c.max*3/4
		if i := bytes.IndexByte(c.buf[cut:], '\n'); i >= 0 && cut+i+1 < len(c.buf) {
			cut += i + 1
		}
		c.buf = append(c.buf[:0:0], c.buf[cut:]...)
		c.base += int64(cut)
		k := sort.Search(len(c.marks), func(i int) bool { return c.marks[i].end > c.base })
		c.marks = append(c.marks[:0:0], c.marks[k:]...)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// arrival returns when the byte at absolute offset off was received.
func (c *console) arrival(off int64) time.Time {
	k := sort.Search(len(c.marks), func(i int) bool { return c.marks[i].end > off })
	if k == len(c.marks) {
		return c.lastData
	}
	return c.marks[k].at
}

// expect waits until re matches a console line after the cursor (terminal
// escapes and carriage returns removed), the timeout passes or the stream
// ends. Complete lines are tried as they
// arrive; the unterminated last line is tried once it has been idle for
// promptIdle or the stream ended. A match moves the cursor past the matched
// line and reports the submatches and when the line's last byte arrived; a
// failure leaves the cursor alone, so a later Expect still sees the output.
// exited says whether the stream ended (QEMU exited).
func (c *console) expect(re *regexp.Regexp, timeout time.Duration) (match []string, at time.Time, exited bool, err error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	c.mu.Lock()
	pos := c.cursor           // lines before pos did not match
	triedPartial := int64(-1) // stream end when the partial line was last tried
	for {
		pos = max(pos, c.base)
		data := c.buf[pos-c.base:]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			if m := re.FindStringSubmatch(cleanLine(data[:i])); m != nil {
				c.cursor = pos + int64(i) + 1
				at := c.arrival(pos + int64(i))
				c.mu.Unlock()
				return m, at, false, nil
			}
			pos += int64(i) + 1
			data = data[i+1:]
		}
		end := pos + int64(len(data))
		var retry time.Duration
		if len(data) > 0 && triedPartial != end {
			if idle := c.now().Sub(c.lastData); c.eof || idle >= promptIdle {
				if m := re.FindStringSubmatch(cleanLine(data)); m != nil {
					c.cursor = end
					at := c.arrival(end - 1)
					c.mu.Unlock()
					return m, at, false, nil
				}
				triedPartial = end
			} else {
				retry = promptIdle - idle
			}
		}
		if c.eof {
			c.mu.Unlock()
			return nil, time.Time{}, true, ErrExited
		}
		changed := c.changed
		c.mu.Unlock()

		var idle *time.Timer
		var idleC <-chan time.Time
		if retry > 0 {
			idle = time.NewTimer(retry)
			idleC = idle.C
		}
		select {
		case <-changed:
		case <-idleC:
		case <-deadline.C:
			if idle != nil {
				idle.Stop()
			}
			return nil, time.Time{}, false, ErrTimeout
		}
		if idle != nil {
			idle.Stop()
		}
		c.mu.Lock()
	}
}

// tail returns the last n lines of the console, without carriage returns.
func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tailOf(c.buf, n)
}

func tailOf(buf []byte, n int) string {
	s := strings.TrimSuffix(string(buf), "\n")
	if s == "" || n <= 0 {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = cleanLine([]byte(l))
	}
	return strings.Join(lines, "\n")
}

// terminalEscape matches ANSI/VT100 escape sequences: CSI sequences
// (cursor moves, screen clears, colours) and two-byte escapes.
var terminalEscape = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])`)

// cleanLine is a console line as a terminal would show it, near enough:
// without terminal escapes (firmware and boot menus clear the screen on the
// line where the kernel then prints) and carriage returns.
func cleanLine(b []byte) string {
	if bytes.IndexByte(b, 0x1b) >= 0 {
		b = terminalEscape.ReplaceAll(b, nil)
	}
	return strings.ReplaceAll(string(b), "\r", "")
}

func (c *console) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf)
}
