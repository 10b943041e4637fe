// Package flash writes a boot image to a block device (a USB stick, a disk)
// safely: it refuses a device that is mounted or otherwise in use, the disk
// the running system's root is on, a partition instead of a whole disk, a
// device smaller than the image, and anything that is not a block device
// unless told otherwise; it reports progress, syncs, reads the device back and
// compares SHA-256 digests.
package flash

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Options change what Flash accepts and where it reports.
type Options struct {
	// AllowFile lets the target be a regular file (created if missing).
	AllowFile bool
	// Progress receives a progress line, redrawn with \r; nil discards.
	Progress io.Writer
	// System is how the running system is inspected; the zero value means
	// the real /proc and /sys.
	System System
}

// RefusedError is a target Flash will not write, and why. Nothing was written.
type RefusedError struct {
	Target, Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to write %s: %s", e.Target, e.Reason)
}

// Result is what Flash wrote.
type Result struct {
	// Bytes is the image's size, SHA256 its digest (and the read-back's).
	Bytes  int64
	SHA256 string
}

// Check decides whether image may be written to target without writing
// anything. It returns a *RefusedError for a target that must not be written.
func Check(image, target string, opts Options) error {
	st, err := os.Stat(image)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("image %s is not a regular file", image)
	}
	tst, err := os.Stat(target)
	switch {
	case errors.Is(err, os.ErrNotExist) && opts.AllowFile:
		return nil
	case err != nil:
		return fmt.Errorf("target: %w", err)
	case tst.Mode().IsRegular():
		if !opts.AllowFile {
			return &RefusedError{target, "not a block device (pass --allow-file to write a regular file)"}
		}
		if os.SameFile(st, tst) {
			return &RefusedError{target, "it is the image itself"}
		}
		return nil
	case tst.Mode()&os.ModeDevice == 0 || tst.Mode()&os.ModeCharDevice != 0:
		return &RefusedError{target, "not a block device"}
	}
	dev, err := deviceNumber(target)
	if err != nil {
		return err
	}
	if err := opts.System.checkDevice(target, dev); err != nil {
		return err
	}
	size, err := deviceSize(target)
	if err != nil {
		return fmt.Errorf("size of %s: %w", target, err)
	}
	if size < st.Size() {
		return &RefusedError{target, fmt.Sprintf("the device holds %d bytes (%s), the image is %d bytes (%s)",
			size, human(size), st.Size(), human(st.Size()))}
	}
	return nil
}

// Flash writes image to target after Check accepts it, syncs, reads the
// written bytes back and compares their SHA-256 with the image's.
func Flash(image, target string, opts Options) (*Result, error) {
	if err := Check(image, target, opts); err != nil {
		return nil, err
	}
	in, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	out, err := openTarget(target)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	p := &progress{w: opts.Progress, verb: "write", total: size, start: time.Now()}
	buf := make([]byte, 4<<20)
	n, err := io.CopyBuffer(struct{ io.Writer }{io.MultiWriter(out, h, p)}, struct{ io.Reader }{in}, buf)
	if err == nil && n != size {
		err = fmt.Errorf("image changed size while writing (%d of %d bytes)", n, size)
	}
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("write %s: %w", target, err)
	}
	p.done()
	if err := out.Sync(); err != nil {
		out.Close()
		return nil, fmt.Errorf("sync %s: %w", target, err)
	}
	dropCache(out)
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", target, err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	back, err := os.Open(target)
	if err != nil {
		return nil, err
	}
	defer back.Close()
	dropCache(back)
	h.Reset()
	p = &progress{w: opts.Progress, verb: "verify", total: size, start: time.Now()}
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.MultiWriter(h, p)}, io.LimitReader(back, size), buf); err != nil {
		return nil, fmt.Errorf("read back %s: %w", target, err)
	}
	p.done()
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("verify %s: read back SHA-256 %s, wrote %s", target, got, want)
	}
	return &Result{Bytes: size, SHA256: want}, nil
}

// progress draws "write 120/258 MiB 46% 80 MiB/s" at most five times a second.
type progress struct {
	w       io.Writer
	verb    string
	total   int64
	n       int64
	start   time.Time
	lastOut time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.w != nil && time.Since(p.lastOut) >= 200*time.Millisecond {
		p.draw()
	}
	return len(b), nil
}

func (p *progress) draw() {
	p.lastOut = time.Now()
	pct := int64(100)
	if p.total > 0 {
		pct = p.n * 100 / p.total
	}
	rate := float64(p.n) / (1 << 20) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r%-6s %s/%s %3d%% %.0f MiB/s ", p.verb, human(p.n), human(p.total), pct, rate)
}

func (p *progress) done() {
	if p.w != nil {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

func human(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
