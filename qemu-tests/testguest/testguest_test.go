package testguest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestImage(t *testing.T) {
	for _, g := range []Guest{{Name: "a"}, {Name: "web-01", Mode: ModeHog, HogMiB: 100},
		{Name: strings.Repeat("n", MaxName), Mode: ModeHog, HogMiB: 1}, {Name: "s", Mode: ModeSpoof, Frames: 3}} {
		img, err := g.Image()
		if err != nil {
			t.Fatalf("%+v: %v", g, err)
		}
		if len(img) != DiskSize || img[510] != 0x55 || img[511] != 0xaa {
			t.Fatalf("%+v: %d bytes, signature %x", g, len(img), img[510:512])
		}
		// The boot sector loads all the code after it: "mov ax,0x02NN;
		// mov cx,2" reads NN sectors from sector 2.
		end := bytes.LastIndexFunc(img, func(r rune) bool { return r != 0 }) + 1
		sectors := (end - 512 + 511) / 512
		if !bytes.Contains(img[:510], []byte{0xb8, byte(sectors), 0x02, 0xb9, 0x02, 0x00}) {
			t.Errorf("%+v: the boot sector does not load the %d sectors of code after it", g, sectors)
		}
		if !bytes.Contains(img[:end], []byte(UpLine(g.Name)+"\r\n\x00")) {
			t.Errorf("%+v: no up line", g)
		}
		if g.Mode == ModeSpoof && (!bytes.Contains(img[:end], []byte(SentLine(g.Name, g.Frames))) || !bytes.Contains(img[:end], ForgedMAC[:])) {
			t.Errorf("%+v: no sent line or forged MAC in the code", g)
		}
	}
	for _, g := range []Guest{{Name: strings.Repeat("n", MaxName+1)}, {Name: "bad\nname"}, {Name: "h", Mode: ModeHog},
		{Name: "s", Mode: ModeSpoof}, {Name: "s", Mode: ModeSpoof, Frames: 10001}} {
		if _, err := g.Image(); err == nil {
			t.Errorf("%+v: no error", g)
		}
	}
}

// TestBoot boots each kind of guest under QEMU (TCG), waits for its lines
// on COM1, then presses the ACPI power button and expects it to power off.
// The spoofing guest's NIC has QEMU's filter-dump on its backend, and the
// frames it recorded are checked: every pair, from the NIC's MAC and from
// ForgedMAC.
func TestBoot(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64")
	}
	const mac = "52:54:00:aa:bb:01"
	for _, tc := range []struct {
		g    Guest
		bus  string
		nic  bool
		want []string
	}{
		{Guest{Name: "idle1"}, "virtio", false, []string{UpLine("idle1")}},
		{Guest{Name: "hog1", Mode: ModeHog, HogMiB: 48}, "ide", false, []string{UpLine("hog1"), TouchedLine("hog1", 48)}},
		{Guest{Name: "spoof1", Mode: ModeSpoof, Frames: 5}, "virtio", true, []string{UpLine("spoof1"), SentLine("spoof1", 5)}},
		{Guest{Name: "nonic1", Mode: ModeSpoof, Frames: 5}, "virtio", false, []string{UpLine("nonic1"), NoNICLine("nonic1")}},
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
			args := []string{"-accel", "tcg", "-m", "64", "-nographic", "-vga", "none",
				"-nodefaults", "-no-user-config", "-net", "none",
				"-drive", "file=" + img + ",format=raw,if=" + tc.bus,
				"-serial", "file:" + con, "-qmp", "stdio"}
			dump := filepath.Join(dir, "nic.pcap")
			if tc.nic {
				args = append(args, "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0,romfile=,mac="+mac,
					"-object", "filter-dump,id=d0,netdev=n0,file="+dump)
			}
			cmd := exec.CommandContext(ctx, qemu, args...)
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
			for i, line := range tc.want {
				want := line + "\r\n"
				if i == 0 {
					// SeaBIOS's last line is out in full before the guest's first.
					want = "Booting from Hard Disk...\r\n" + want
				}
				if err := waitFor(ctx, con, want, done); err != nil {
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
			if tc.nic {
				checkFrames(t, dump, mac, tc.g)
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

// checkFrames reads the pcap file QEMU's filter-dump wrote and expects the
// guest's frames in it: g.Frames pairs, broadcast, of FrameType, each pair
// from mac and then from ForgedMAC, the up line as payload.
func checkFrames(t *testing.T, pcap, mac string, g Guest) {
	t.Helper()
	b, err := os.ReadFile(pcap)
	if err != nil || len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("pcap %s: %v, %d bytes", pcap, err, len(b))
	}
	own, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for rest := b[24:]; len(rest) > 0; n++ {
		if len(rest) < 16 || len(rest) < 16+int(binary.LittleEndian.Uint32(rest[8:])) {
			t.Fatalf("pcap %s: truncated record %d", pcap, n)
		}
		size := int(binary.LittleEndian.Uint32(rest[8:]))
		f := rest[16 : 16+size]
		rest = rest[16+size:]
		src := []byte(own)
		if n%2 == 1 {
			src = ForgedMAC[:]
		}
		want := slices.Concat(bytes.Repeat([]byte{0xff}, 6), src, []byte{FrameType >> 8, FrameType & 0xff}, []byte(UpLine(g.Name)+"\r\n"))
		if len(f) < 60 || !bytes.HasPrefix(f, want) {
			t.Errorf("frame %d: %d bytes % x, want 60 or more starting % x", n, len(f), f, want)
		}
	}
	if n != 2*g.Frames {
		t.Errorf("pcap %s: %d frames, want %d", pcap, n, 2*g.Frames)
	}
}
