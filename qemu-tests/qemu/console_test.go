package qemu

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for console arrival times.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestConsoleExpect(t *testing.T) {
	con := newConsole(MaxConsole, time.Now)
	con.append([]byte("boot: one\r\nboot: two\nready ip=10.0.2"))

	m, _, _, err := con.expect(regexp.MustCompile(`boot: (\w+)`), time.Second)
	if err != nil || m[1] != "one" {
		t.Fatalf("first expect = %q, %v; want one", m, err)
	}
	// The next Expect starts after the matched line.
	m, _, _, err = con.expect(regexp.MustCompile(`boot: (\w+)`), time.Second)
	if err != nil || m[1] != "two" {
		t.Fatalf("second expect = %q, %v; want two", m, err)
	}
	// A failed Expect consumes nothing.
	if _, _, _, err := con.expect(regexp.MustCompile(`never`), 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("expect never: err = %v, want ErrTimeout", err)
	}
	// A line still being written is not matched half-way.
	go func() {
		time.Sleep(50 * time.Millisecond)
		con.append([]byte(".15\n"))
	}()
	m, _, _, err = con.expect(regexp.MustCompile(`ready ip=(\S+)`), time.Second)
	if err != nil || m[1] != "10.0.2.15" {
		t.Fatalf("expect ip = %q, %v; want 10.0.2.15", m, err)
	}
}

func TestConsolePrompt(t *testing.T) {
	con := newConsole(MaxConsole, time.Now)
	con.append([]byte("welcome\n/ # "))
	start := time.Now()
	if _, _, _, err := con.expect(regexp.MustCompile(`^/ # $`), time.Second); err != nil {
		t.Fatalf("prompt without newline: %v", err)
	}
	if d := time.Since(start); d < promptIdle/2 {
		t.Errorf("prompt matched after %s, before the line was idle", d)
	}
	con.append([]byte("ls\n"))
	if m, _, _, err := con.expect(regexp.MustCompile(`^\S+$`), time.Second); err != nil || m[0] != "ls" {
		t.Errorf("after prompt: %q, %v; want the rest of the prompt line", m, err)
	}
}

func TestConsoleExited(t *testing.T) {
	con := newConsole(MaxConsole, time.Now)
	r, w := io.Pipe()
	go con.readFrom(r)
	io.WriteString(w, "last words")
	w.Close()
	start := time.Now()
	_, _, exited, err := con.expect(regexp.MustCompile(`never`), time.Minute)
	if !exited || !errors.Is(err, ErrExited) {
		t.Fatalf("expect after EOF: exited=%v err=%v, want ErrExited", exited, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("expect after EOF took %s, want it to return at EOF", time.Since(start))
	}
	// At EOF the unterminated line is tried at once.
	con2 := newConsole(MaxConsole, time.Now)
	r, w = io.Pipe()
	go con2.readFrom(r)
	io.WriteString(w, "Kernel panic - not syncing")
	w.Close()
	if _, _, _, err := con2.expect(regexp.MustCompile(`Kernel panic`), time.Minute); err != nil {
		t.Errorf("unterminated line at EOF: %v", err)
	}
}

func TestConsoleArrival(t *testing.T) {
	clock := &fakeClock{t: time.Unix(100, 0)}
	con := newConsole(MaxConsole, clock.now)
	con.append([]byte("a\nb"))
	clock.t = time.Unix(105, 0)
	con.append([]byte("c\nd\n"))
	clock.t = time.Unix(200, 0)
	for _, tt := range []struct {
		re   string
		want int64
	}{{`^a$`, 100}, {`^bc$`, 105}, {`^d$`, 105}} {
		_, at, _, err := con.expect(regexp.MustCompile(tt.re), time.Second)
		if err != nil || at.Unix() != tt.want {
			t.Errorf("expect %s: at %v, %v; want %d", tt.re, at.Unix(), err, tt.want)
		}
	}
}

func TestConsoleBounded(t *testing.T) {
	con := newConsole(100, time.Now)
	for i := 0; i < 50; i++ {
		con.append([]byte("0123456789\n"))
	}
	con.append([]byte("end\n"))
	if n := len(con.bytes()); n > 100 {
		t.Errorf("console keeps %d bytes, want at most 100", n)
	}
	if !strings.HasPrefix(string(con.bytes()), "0123456789\n") {
		t.Errorf("trimmed console does not start at a line: %q", con.bytes())
	}
	if _, _, _, err := con.expect(regexp.MustCompile(`^end$`), time.Second); err != nil {
		t.Errorf("expect after trimming: %v", err)
	}
	if got, want := con.tail(2), "0123456789\nend"; got != want {
		t.Errorf("tail(2) = %q, want %q", got, want)
	}
}

func TestExpectErrorCarriesTail(t *testing.T) {
	e := &ExpectError{VM: "floor", Pattern: "x", Timeout: 3 * time.Second, Tail: "line 1\nline 2"}
	want := "floor: waiting for /x/: no match within 3s\n--- console, last 40 lines ---\nline 1\nline 2\n--- end of console ---"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if !errors.Is(e, ErrTimeout) || errors.Is(e, ErrExited) {
		t.Errorf("timeout error does not match ErrTimeout only")
	}
	e.Exited, e.Status = true, "exit status 0"
	if !errors.Is(e, ErrExited) || errors.Is(e, ErrTimeout) {
		t.Errorf("exit error does not match ErrExited only")
	}
}

func TestConsoleStripsEscapes(t *testing.T) {
	con := newConsole(MaxConsole, time.Now)
	// What OVMF leaves before the kernel's first line.
	con.append([]byte("\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01Hfloor: ready\r\n"))
	if _, _, _, err := con.expect(regexp.MustCompile(`^floor: ready$`), time.Second); err != nil {
		t.Errorf("line after escapes: %v", err)
	}
	if got := con.tail(1); got != "floor: ready" {
		t.Errorf("tail = %q, want the line without escapes", got)
	}
}
