package initramfs

import (
	"bytes"
	"os/exec"
	"testing"
)

func TestCompressionsRoundTripWithSystemTools(t *testing.T) {
	tools := map[Compression][]string{Gzip: {"gzip", "-dc"}, XZ: {"xz", "-dc"}, Zstd: {"zstd", "-dc"}}
	for c, argv := range tools {
		t.Run(string(c), func(t *testing.T) {
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Skipf("%s not installed", argv[0])
			}
			var buf bytes.Buffer
			zw, err := Compress(&buf, c)
			if err != nil {
				t.Fatal(err)
			}
			payload := bytes.Repeat([]byte("hardvisor initramfs "), 5000)
			zw.Write(payload)
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdin = bytes.NewReader(buf.Bytes())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %v", argv, err)
			}
			if !bytes.Equal(out, payload) {
				t.Errorf("%s round trip through %s differs", c, argv[0])
			}
		})
	}
}
