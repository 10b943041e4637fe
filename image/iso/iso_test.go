package iso

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteReproducible writes the ISO twice, the second time after the
// clock has moved on, and gets the same bytes; the volume descriptor carries
// the epoch, not the clock.
func TestWriteReproducible(t *testing.T) {
	dir := t.TempDir()
	uki := filepath.Join(dir, "uki.efi")
	os.WriteFile(uki, bytes.Repeat([]byte("UKI."), 1<<18), 0o644)
	in := Inputs{UKI: uki, FATVolumeID: 7, Epoch: 1700000000}
	var isos [][]byte
	for i := 0; i < 2; i++ {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // ISO times have 1 s resolution
		}
		p := filepath.Join(dir, "a.iso")
		if err := Write(p, dir, in); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		isos = append(isos, b)
	}
	if !bytes.Equal(isos[0], isos[1]) {
		t.Fatal("two writes of the same inputs differ")
	}
	b := isos[0]
	if len(b)%blockSize != 0 || len(b) < 34<<20 {
		t.Errorf("ISO is %d bytes", len(b))
	}
	pvd := b[pvdOffset : pvdOffset+blockSize]
	if got, want := string(pvd[pvdCreation:pvdCreation+16]), "2023111422132000"; got != want {
		t.Errorf("creation time %q, want %q", got, want)
	}
	if string(pvd[40:49]) != VolumeID {
		t.Errorf("volume id %q", pvd[40:72])
	}
	// Boot record volume descriptor (El Torito) follows the PVD.
	if br := b[pvdOffset+blockSize:]; br[0] != 0 || string(br[7:30]) != "EL TORITO SPECIFICATION" {
		t.Errorf("no El Torito boot record after the PVD")
	}
}
