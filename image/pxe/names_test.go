package pxe_test

import (
	"testing"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/pxe"
)

// The bundle keeps the build's artifact names; pxe cannot import build
// (build calls pxe.Write), so the test ties them together.
func TestNamesMatchBuild(t *testing.T) {
	for _, c := range [][2]string{{pxe.Kernel, build.Kernel}, {pxe.Initramfs, build.Initramfs}, {pxe.UKI, build.UKI}} {
		if c[0] != c[1] {
			t.Errorf("pxe name %q != build name %q", c[0], c[1])
		}
	}
}
