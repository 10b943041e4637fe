package cli

import (
	"context"
	"io"
	"os"

	"hardvisor.dev/hardvisor/cmd/hardvisor/run"
)

const runUsage = "usage: hardvisor run [--media kernel|usb|iso|pxe] [--secure-boot] [--port PORT] [--memory MiB] [DIR]"

// runRun is `hardvisor run`: boot the build in DIR in QEMU with the serial
// console on this terminal.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	media := fs.String("media", string(run.Kernel), "what to boot: kernel, usb, iso or pxe")
	secure := fs.Bool("secure-boot", false, "OVMF with Secure Boot on and Debian's snakeoil key enrolled (usb, iso, pxe)")
	port := fs.Int("port", run.DefaultPort, "host port on 127.0.0.1 forwarded to the management port 8443")
	memory := fs.Int("memory", run.DefaultMemory, "guest RAM in MiB")
	pos, help, err := parseInterspersed(fs, args)
	if err != nil || help {
		return err
	}
	dir := "out"
	switch len(pos) {
	case 0:
	case 1:
		dir = pos[0]
	default:
		return &UsageError{Msg: runUsage}
	}
	m, err := run.ParseMedia(*media)
	if err != nil {
		return &UsageError{Msg: "--media: " + err.Error()}
	}
	if *secure && m == run.Kernel {
		return &UsageError{Msg: "--secure-boot needs --media usb, iso or pxe: the firmware verifies the UKI, not a bare kernel"}
	}
	// Execute has no stdin parameter: the console is this process's own.
	return run.Run(ctx, run.Options{Media: m, Dir: dir, SecureBoot: *secure, Port: *port, Memory: *memory},
		os.Stdin, stdout, stderr)
}
