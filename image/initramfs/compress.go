package initramfs

import (
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression is an initramfs compression the Debian kernel can unpack
// (CONFIG_RD_GZIP, CONFIG_RD_XZ, CONFIG_RD_ZSTD).
type Compression string

// The compressions Compress knows. Zstd is the default: `make bench` measures
// all of them; zstd unpacks fastest under TCG at a size close to xz's.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	XZ   Compression = "xz"
	Zstd Compression = "zstd"
)

// Compressions lists every value of Compression, for flags and errors.
var Compressions = []Compression{Zstd, Gzip, XZ, None}

// ParseCompression checks a compression name.
func ParseCompression(s string) (Compression, error) {
	for _, c := range Compressions {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown compression %q (want one of %v)", s, Compressions)
}

// Compress returns a writer that compresses into w deterministically: same input,
// same bytes (no timestamps or names in headers, single-threaded encoders).
// Closing it flushes the compressor but does not close w.
func Compress(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None:
		return nopCloser{w}, nil
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case XZ:
		// The kernel's XZ decoder checks CRC32 only.
		return xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(w)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
