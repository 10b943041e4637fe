package supervise

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// FileExists is met, or ready, once a file exists (a socket, a pid file).
type FileExists struct {
	// Path is the file.
	Path string
}

var (
	_ Condition    = FileExists{}
	_ Checker      = FileExists{}
	_ fmt.Stringer = FileExists{}
)

// Name describes the condition.
func (f FileExists) Name() string { return "exists " + f.Path }

// String describes the check.
func (f FileExists) String() string { return f.Name() }

// Met reports whether the file exists.
func (f FileExists) Met() (bool, error) {
	_, err := os.Stat(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Check fails until the file exists.
func (f FileExists) Check(context.Context) error {
	if _, err := os.Stat(f.Path); err != nil {
		return err
	}
	return nil
}

// Mounted is met once a file system is mounted at Path.
type Mounted struct {
	// Path is the mount point, absolute and clean.
	Path string
	// MountInfo is the mountinfo file read; default /proc/self/mountinfo.
	MountInfo string
}

var _ Condition = Mounted{}

// Name describes the condition.
func (m Mounted) Name() string { return "mounted " + m.Path }

// Met reports whether Path is a mount point.
func (m Mounted) Met() (bool, error) {
	file := m.MountInfo
	if file == "" {
		file = "/proc/self/mountinfo"
	}
	f, err := os.Open(file)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", m.Name(), err)
	}
	defer f.Close()
	ok, err := IsMounted(f, filepath.Clean(m.Path))
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", m.Name(), err)
	}
	return ok, nil
}

// IsMounted reports whether a mountinfo table (proc(5)) has a mount at path.
func IsMounted(mountinfo io.Reader, path string) (bool, error) {
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && unescapeMount(f[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes ("\040" for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TCPListen is ready once something listens on a TCP port. Run against a
// service it looks at the listening sockets in the service's own network
// namespace (/proc/<pid>/net/tcp and tcp6), so it works for a service in
// the management namespace; alone it dials Addr.
type TCPListen struct {
	// Port is the TCP port.
	Port int
	// Addr is what Check dials; default "127.0.0.1:<Port>".
	Addr string
	// Proc is the proc file system; default /proc.
	Proc string
}

var (
	_ TargetChecker = TCPListen{}
	_ fmt.Stringer  = TCPListen{}
)

// String describes the check.
func (c TCPListen) String() string { return "tcp listen :" + strconv.Itoa(c.Port) }

// Check dials the port.
func (c TCPListen) Check(ctx context.Context) error {
	addr := c.Addr
	if addr == "" {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// CheckTarget looks for a listening socket on the port in t's network namespace.
func (c TCPListen) CheckTarget(_ context.Context, t Target) error {
	proc := c.Proc
	if proc == "" {
		proc = "/proc"
	}
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(proc, strconv.Itoa(t.Pid), "net", file))
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return err
		}
		ok, err := Listening(f, c.Port)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name(), err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("nothing listens on tcp port %d", c.Port)
}

// Listening reports whether a /proc/net/tcp (or tcp6) table has a socket in
// state LISTEN on port.
func Listening(table io.Reader, port int) (bool, error) {
	sc := bufio.NewScanner(table)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 4 {
			continue // header
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			return false, fmt.Errorf("bad local address %q", f[1])
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return false, fmt.Errorf("bad local port %q", hexPort)
		}
		if f[3] == "0A" && int(p) == port { // TCP_LISTEN
			return true, nil
		}
	}
	return false, sc.Err()
}

// Exec is ready when a command exits with status 0. Run against a service it
// starts the command through the supervisor's Spawner; alone through a
// WaitSpawner. It is killed when the check times out.
type Exec struct {
	// Command is the program and its arguments.
	Command []string
}

var (
	_ TargetChecker = Exec{}
	_ fmt.Stringer  = Exec{}
)

// String describes the check.
func (c Exec) String() string { return "exec " + strings.Join(c.Command, " ") }

// Check runs the command.
func (c Exec) Check(ctx context.Context) error { return c.run(ctx, WaitSpawner{}) }

// CheckTarget runs the command through t.Spawner.
func (c Exec) CheckTarget(ctx context.Context, t Target) error {
	sp := t.Spawner
	if sp == nil {
		sp = WaitSpawner{}
	}
	return c.run(ctx, sp)
}

func (c Exec) run(ctx context.Context, sp Spawner) error {
	if len(c.Command) == 0 {
		return errors.New("exec check: no command")
	}
	// Output goes to /dev/null (nil): a pipe would need a Wait to be closed.
	cmd := exec.Command(c.Command[0], c.Command[1:]...)
	exited, err := sp.Spawn(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	select {
	case ex := <-exited:
		if ei := exitInfo(ex); !ei.Success() {
			return fmt.Errorf("%s: %s", c, ei)
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s: %w", c, ctx.Err())
	}
}
