package qemutests

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"

	"hardvisor.dev/hardvisor/image/build"
)

// initramfsNames lists the paths inside a build's initramfs.
func initramfsNames(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, build.Initramfs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress initramfs: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("read initramfs cpio: %v", err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	return names
}

// TestProfiles checks what each profile puts in the image: production has PID 1
// and no shell or tools; debug adds the shell and u-root's core commands.
func TestProfiles(t *testing.T) {
	prod := initramfsNames(t, outDir(t, "HARDVISOR_OUT"))
	debug := initramfsNames(t, outDir(t, "HARDVISOR_OUT_DEBUG"))
	var prodBins []string
	for _, n := range prod {
		if strings.HasPrefix(n, "bbin/") {
			prodBins = append(prodBins, n)
		}
	}
	if want := []string{"bbin/bb", "bbin/hvinit"}; !slices.Equal(prodBins, want) {
		t.Errorf("production bbin/ = %v, want exactly %v", prodBins, want)
	}
	for _, n := range prod {
		if strings.Contains(n, "sh") && strings.HasPrefix(n, "bbin/") || strings.HasSuffix(n, "/busybox") {
			t.Errorf("production image contains a shell: %s", n)
		}
	}
	for _, want := range []string{"bbin/gosh", "bbin/ls", "bbin/cat", "bbin/hvinit", "init", "etc/hardvisor/config.yaml", "etc/hardvisor/modules.load", "dev/console"} {
		if !slices.Contains(debug, want) {
			t.Errorf("debug image lacks %s", want)
		}
	}
	for _, want := range []string{"init", "etc/hardvisor/config.yaml", "etc/hardvisor/modules.load", "etc/os-release", "dev/console"} {
		if !slices.Contains(prod, want) {
			t.Errorf("production image lacks %s", want)
		}
	}
}
