package cli

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args []string
		addr string
		pos  []string
	}{
		{nil, "def", nil},
		{[]string{"dir"}, "def", []string{"dir"}},
		{[]string{"dir", "--addr", "x:1"}, "x:1", []string{"dir"}},
		{[]string{"--addr=x:1", "a", "b"}, "x:1", []string{"a", "b"}},
		{[]string{"a", "--", "--addr", "b"}, "def", []string{"a", "--addr", "b"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		addr := fs.String("addr", "def", "")
		pos, help, err := parseInterspersed(fs, c.args)
		if err != nil || help || *addr != c.addr || !reflect.DeepEqual(pos, c.pos) {
			t.Errorf("%q: pos %q addr %q help %v err %v, want %q %q", c.args, pos, *addr, help, err, c.pos, c.addr)
		}
	}
}

func TestServeAndRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "a", "b"}, {"serve", "--port", "1"},
		{"run", "a", "b"}, {"run", "--media", "floppy"}, {"run", "--secure-boot"},
	} {
		_, _, err := execute(t, args...)
		if err == nil || ExitCode(err) != 2 {
			t.Errorf("hardvisor %v: err=%v, want a usage error (exit 2)", args, err)
		}
	}
	for _, args := range [][]string{{"serve", "-h"}, {"run", "--help"}} {
		if _, stderr, err := execute(t, args...); err != nil || !strings.Contains(stderr, "Usage of "+args[0]) {
			t.Errorf("hardvisor %v: err=%v stderr %q, want usage and no error", args, err, stderr)
		}
	}
	_, _, err := execute(t, "serve", filepath.Join(t.TempDir(), "none"))
	if err == nil || !strings.Contains(err.Error(), "does not exist: run make image") {
		t.Errorf("serve of a missing directory: %v", err)
	}
	_, _, err = execute(t, "run", "--media", "iso", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "hardvisor.iso is missing: run make image") {
		t.Errorf("run of a missing ISO: %v", err)
	}
}

// TestServe runs `hardvisor serve DIR --addr 127.0.0.1:0`, fetches a file,
// sees the request logged and the server stop when the context ends.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "boot.ipxe"), []byte("#!ipxe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Execute(ctx, []string{"serve", dir, "--addr", "127.0.0.1:0"}, io.Discard, pw)
		pw.Close()
	}()
	// Read stderr all along: the handler logs before the response is
	// flushed.
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve stopped writing: %v", <-done)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("serve wrote nothing for 10 s")
		}
		return ""
	}
	m := regexp.MustCompile(`^serving .* on (http://127\.0\.0\.1:\d+/) \(boot file: http://127\.0\.0\.1:\d+/boot\.ipxe\)$`).FindStringSubmatch(next())
	if m == nil {
		t.Fatal("no serving line")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(m[1] + "boot.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "#!ipxe\n" {
		t.Errorf("GET boot.ipxe = %d %q", resp.StatusCode, body)
	}
	if l := next(); !strings.Contains(l, "method=GET path=/boot.ipxe status=200 bytes=7 ") {
		t.Errorf("log line %q", l)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}
