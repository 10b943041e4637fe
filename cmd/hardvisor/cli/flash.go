package cli

import (
	"fmt"
	"io"

	"hardvisor.dev/hardvisor/image/flash"
)

// runFlash is `hardvisor flash [--allow-file] IMAGE DEVICE`.
func runFlash(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("flash", stderr)
	allowFile := fs.Bool("allow-file", false, "allow DEVICE to be a regular file (created if missing)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return &UsageError{Msg: "usage: hardvisor flash [--allow-file] IMAGE DEVICE"}
	}
	image, device := fs.Arg(0), fs.Arg(1)
	res, err := flash.Flash(image, device, flash.Options{AllowFile: *allowFile, Progress: stderr})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: wrote and verified %d bytes, sha256 %s\n", device, res.Bytes, res.SHA256)
	return nil
}
