package supervise

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListening(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`
	for port, want := range map[int]bool{8443: true, 8080: false, 22: false} {
		got, err := Listening(strings.NewReader(table), port)
		if err != nil || got != want {
			t.Errorf("Listening(%d) = %v, %v; want %v", port, got, err, want)
		}
	}
}

func TestTCPListenTarget(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "42", "net")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "tcp"), []byte("header\n   0: 00000000:0016 00000000:0000 0A x\n"), 0o644)
	c := TCPListen{Port: 22, Proc: proc}
	if err := c.CheckTarget(context.Background(), Target{Pid: 42}); err != nil {
		t.Errorf("port 22: %v", err)
	}
	c.Port = 23
	if err := c.CheckTarget(context.Background(), Target{Pid: 42}); err == nil || err.Error() != "nothing listens on tcp port 23" {
		t.Errorf("port 23: %v", err)
	}
}

func TestIsMounted(t *testing.T) {
	info := `22 1 0:21 / / rw,relatime - tmpfs rootfs rw
35 22 8:3 / /var/lib/hard\040visor rw,nodev - ext4 /dev/sda3 rw
`
	for path, want := range map[string]bool{"/": true, "/var/lib/hard visor": true, "/var/lib": false} {
		got, err := IsMounted(strings.NewReader(info), path)
		if err != nil || got != want {
			t.Errorf("IsMounted(%q) = %v, %v; want %v", path, got, err, want)
		}
	}
}

func TestFileExists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sock")
	f := FileExists{Path: p}
	if ok, err := f.Met(); ok || err != nil {
		t.Errorf("before: %v %v", ok, err)
	}
	os.WriteFile(p, nil, 0o600)
	if ok, err := f.Met(); !ok || err != nil {
		t.Errorf("after: %v %v", ok, err)
	}
	if err := f.Check(context.Background()); err != nil {
		t.Error(err)
	}
}
