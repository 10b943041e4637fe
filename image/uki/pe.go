package uki

import (
	"encoding/binary"
	"fmt"
	"os"
)

// normalizeHeader makes objcopy's output reproducible: objcopy stamps the PE
// header with the current time, so the timestamp is set to ts and the header
// checksum recomputed over the result.
func normalizeHeader(path string, ts uint32) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) < 0x40 {
		return fmt.Errorf("%s: too short for a PE file", path)
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if pe+24+68 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return fmt.Errorf("%s: no PE header", path)
	}
	binary.LittleEndian.PutUint32(b[pe+8:], ts)
	sumOff := pe + 24 + 64
	binary.LittleEndian.PutUint32(b[sumOff:], 0)
	binary.LittleEndian.PutUint32(b[sumOff:], checksum(b, sumOff))
	return os.WriteFile(path, b, 0o644)
}

// checksum is the PE image checksum: the 16-bit one's-complement-style sum of
// the file with the checksum field taken as zero, plus the file length.
func checksum(b []byte, sumOff int) uint32 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		if i == sumOff || i == sumOff+2 {
			continue
		}
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}
