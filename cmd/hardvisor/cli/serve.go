package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"hardvisor.dev/hardvisor/cmd/hardvisor/serve"
	"hardvisor.dev/hardvisor/image/pxe"
)

const serveUsage = "usage: hardvisor serve [DIR] [--addr HOST:PORT]"

// runServe is `hardvisor serve [DIR] --addr HOST:PORT`: the network boot
// bundle over HTTP until ctx is done.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on, HOST:PORT")
	pos, help, err := parseInterspersed(fs, args)
	if err != nil || help {
		return err
	}
	dir := filepath.Join("out", pxe.Dir)
	switch len(pos) {
	case 0:
	case 1:
		dir = pos[0]
	default:
		return &UsageError{Msg: serveUsage}
	}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist: run make image (hardvisor build writes the PXE bundle to OUT/%s)", dir, pxe.Dir)
	}
	if err != nil {
		return err
	}
	defer root.Close()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "serving %s on http://%s/ (boot file: http://%s/%s)\n", dir, l.Addr(), l.Addr(), pxe.Script)
	return serve.Serve(ctx, l, serve.Handler(root, slog.New(slog.NewTextHandler(stderr, nil))))
}

// parseInterspersed parses flags that may come before or after positional
// arguments (`serve DIR --addr X`; flag.FlagSet alone stops at the first
// positional one) and returns the positional ones. "--" ends flag parsing.
// help is true when -h or --help was given (the usage has been printed).
func parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, help bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, true, nil
			}
			return nil, false, &UsageError{Msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, false, nil
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), false, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
