package qemu

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/u-root/mkuimage/cpio"
)

// FloorMarker is the console line the floor init writes before it powers
// the machine off (the same string as Marker in package main floorinit,
// which cannot be imported).
const FloorMarker = "floor: ready"

// floorPackage is the trivial PID 1 packed by BuildFloorInitramfs.
const floorPackage = "hardvisor.dev/hardvisor/qemu-tests/floorinit"

// BuildFloorInitramfs compiles the floor init (qemu-tests/floorinit)
// statically for linux/amd64 and writes dir/floor.cpio, an uncompressed
// newc archive of /dev, /dev/console (char 5:1) and /init, returning its
// path. Booted with console=ttyS0 it prints FloorMarker and powers off: the
// boot-time floor of the machine. It runs the go command, so it must be
// called from inside the hardvisor module (as its tests are).
func BuildFloorInitramfs(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build floor init: go toolchain not found: %w", err)
	}
	bin := filepath.Join(dir, "floorinit")
	cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, floorPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build floor init %s: %w\n%s", floorPackage, err, out)
	}
	init, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read floor init: %w", err)
	}

	path := filepath.Join(dir, "floor.cpio")
	tmp, err := os.CreateTemp(dir, "floor.cpio.*")
	if err != nil {
		return "", fmt.Errorf("write floor initramfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeCPIO(tmp, floorRecords(init)); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write floor initramfs %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write floor initramfs %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write floor initramfs: %w", err)
	}
	return path, nil
}

// floorRecords lists the floor initramfs. /dev/console is there so the
// kernel can give PID 1 its console before anything is mounted.
func floorRecords(init []byte) []cpio.Record {
	return []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticRecord(init, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
}

// writeCPIO writes records as a reproducible newc archive with a trailer.
func writeCPIO(w io.Writer, records []cpio.Record) error {
	rw := cpio.Newc.Writer(w)
	for _, r := range records {
		if err := rw.WriteRecord(cpio.MakeReproducible(r)); err != nil {
			return fmt.Errorf("cpio record %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("cpio trailer: %w", err)
	}
	return nil
}
