package testguest

import (
	"bytes"
	"context"
	"fmt"

	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBootSector(t *testing.T) {
	for _, g := range []Guest{{Name: "a"}, {Name: "web-01", Mode: ModeHog, HogMiB: 100}, {Name: strings.Repeat("n", 60), Mode: ModeHog, HogMiB: 1}} {
		bs, err := g.BootSector()
		if err != nil {
			t.Fatalf("%+v: %v", g, err)
		}
		if len(bs) != 512 || bs[510] != 0x55 || bs[511] != 0xaa {
			t.Fatalf("%+v: %d bytes, signature %x", g, len(bs), bs[510:])
		}
		if !bytes.Contains(bs, []byte(UpLine(g.Name)+"\r\n\x00")) {
			t.Errorf("%+v: no up line", g)
		}
		img, err := g.Image()
		if err != nil || len(img) != DiskSize || !bytes.Equal(img[:512], bs) {
			t.Errorf("%+v: image %d bytes, %v", g, len(img), err)
		}
	}
	for _, g := range []Guest{{Name: strings.Repeat("n", 200)}, {Name: "bad\nname"}, {Name: "h", Mode: ModeHog}} {
		if _, err := g.BootSector(); err == nil {
			t.Errorf("%+v: no error", g)
		}
	}
}

// TestBoot boots each kind of guest under QEMU (TCG), waits for its lines
// on COM1, then presses the ACPI power button and expects it to power off.
func TestBoot(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64")
	}
	for _, tc := range []struct {
		g    Guest
		bus  string
		want []string
	}{
		{Guest{Name: "idle1"}, "virtio", []string{UpLine("idle1")}},
		{Guest{Name: "hog1", Mode: ModeHog, HogMiB: 48}, "ide", []string{UpLine("hog1"), TouchedLine("hog1", 48)}},
	} {
		t.Run(tc.g.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := filepath.Join(dir, "disk.img")
			if err := tc.g.WriteFile(img); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			con := filepath.Join(dir, "console.log")
			cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "64", "-nographic", "-vga", "none",
				"-nodefaults", "-no-user-config", "-net", "none",
				"-drive", "file="+img+",format=raw,if="+tc.bus,
				"-serial", "file:"+con, "-qmp", "stdio")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			for _, line := range tc.want {
				if err := waitFor(ctx, con, line+"\r\n", done); err != nil {
					t.Fatalf("%v\nqemu: %s", err, out.String())
				}
				t.Logf("%q after %v", line, time.Since(start).Round(time.Millisecond))
			}
			fmt.Fprintln(stdin, `{"execute":"qmp_capabilities"}`)
			fmt.Fprintln(stdin, `{"execute":"system_powerdown"}`)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("qemu: %v\n%s", err, out.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("guest did not power off on the ACPI power button\n%s", out.String())
			}
			if !strings.Contains(out.String(), `"guest-shutdown"`) {
				t.Errorf("QEMU did not report a guest shutdown:\n%s", out.String())
			}
			if b, _ := os.ReadFile(con); !bytes.Contains(b, []byte(PoweringOffLine(tc.g.Name))) {
				t.Errorf("console: %q", b)
			}
			stdin.Close()
		})
	}
}

func waitFor(ctx context.Context, path, s string, exited <-chan error) error {
	for {
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(s)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %q in %s: %w (have %q)", s, path, ctx.Err(), b)
		case err := <-exited:
			return fmt.Errorf("qemu exited before %q: %v", s, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
