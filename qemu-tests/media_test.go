package qemutests

import (
	"bytes"
	"debug/pe"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/disk"
	"hardvisor.dev/hardvisor/image/iso"
	"hardvisor.dev/hardvisor/qemu-tests/qemu"
)

// TestMediaBoot boots the built disk image under OVMF from a virtio disk and
// from a USB stick, and the ISO from a CD-ROM: each reaches ready with the
// built version. Disks are snapshots, so out/ is not modified (systemd-boot
// renames the entry as it counts tries).
func TestMediaBoot(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	for _, tc := range []struct {
		name string
		disk qemu.Disk
	}{
		{"usb-image-virtio", qemu.Disk{Path: filepath.Join(dir, build.DiskImage), Interface: qemu.Virtio}},
		{"usb-image-usb-storage", qemu.Disk{Path: filepath.Join(dir, build.DiskImage), Interface: qemu.USB}},
		{"iso-cdrom", qemu.Disk{Path: filepath.Join(dir, build.ISO), Interface: qemu.CDROM}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.disk
			d.Snapshot, d.BootIndex = d.Interface != qemu.CDROM, 1
			vm := qemu.StartT(t, qemu.Options{Firmware: &qemu.Firmware{}, Disks: []qemu.Disk{d}, NoReboot: true})
			_, at, err := vm.ExpectAt(readyLine(m.Version), bootTimeout)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("ready %.1f s after QEMU started", at.Seconds())
			powerDown(t, vm)
		})
	}
}

// What a Secure Boot refusal prints: OVMF's boot manager when the boot
// loader itself is not signed by a db key, systemd-boot when the UKI it loads
// is not (LoadImage returns EFI_ACCESS_DENIED).
var (
	firmwareRefused = regexp.MustCompile(`BdsDxe: failed to load Boot\d+ .*: Access Denied`)
	loaderRefused   = regexp.MustCompile(`Error loading \\EFI\\Linux\\hardvisor-[^ ]*\.efi: Access Denied`)
)

// refusalTimeout bounds the wait for the refusal: OVMF's own start under TCG
// plus one load attempt.
const refusalTimeout = 60 * time.Second

// TestSecureBoot builds the default config signed with Debian's snakeoil key
// (enrolled in OVMF_VARS_4M.snakeoil.fd) and boots it with that Secure Boot
// firmware: the signed image reaches ready and the manifest names the signer.
// The same firmware refuses the unsigned image of out/ (its systemd-boot is
// unsigned) and a copy of the signed image in which one byte of the UKI's
// kernel is flipped (systemd-boot is signed and runs; the UKI's signature no
// longer matches): neither reaches ready, and the refusal is on the console.
func TestSecureBoot(t *testing.T) {
	ref := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, ref)
	signed := signedBuild(t)
	sm := readManifest(t, signed)
	if sm.Signer == nil || !strings.Contains(sm.Signer.Subject, "SnakeOil") || len(sm.Signer.SHA256) != 64 {
		t.Errorf("signed manifest's signer = %+v, want the snakeoil certificate", sm.Signer)
	}
	if m.Signer != nil {
		t.Errorf("unsigned out/ manifest names a signer: %+v", m.Signer)
	}

	t.Run("signed-boots", func(t *testing.T) {
		vm := qemu.StartT(t, qemu.Options{Firmware: qemu.SnakeoilFirmware(),
			Disks: []qemu.Disk{{Path: filepath.Join(signed, build.DiskImage), Snapshot: true, BootIndex: 1}}, NoReboot: true})
		_, at, err := vm.ExpectAt(readyLine(sm.Version), bootTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ready %.1f s after QEMU started", at.Seconds())
		powerDown(t, vm)
	})
	t.Run("unsigned-refused", func(t *testing.T) {
		expectRefused(t, filepath.Join(ref, build.DiskImage), m.Version, firmwareRefused)
	})
	t.Run("tampered-refused", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "tampered.img")
		tamperUKI(t, filepath.Join(signed, build.DiskImage), filepath.Join(signed, build.UKI), img)
		expectRefused(t, img, sm.Version, loaderRefused)
	})
}

// expectRefused boots img with the snakeoil firmware and waits for the Secure
// Boot refusal refused; the host must not come up.
func expectRefused(t *testing.T, img, version string, refused *regexp.Regexp) {
	t.Helper()
	vm := qemu.StartT(t, qemu.Options{Firmware: qemu.SnakeoilFirmware(),
		Disks: []qemu.Disk{{Path: img, Snapshot: true, BootIndex: 1}}, NoReboot: true})
	ready := readyLine(version)
	line := expect(t, vm, refused, refusalTimeout)
	t.Logf("refused: %s\nconsole:\n%s", strings.TrimSpace(line[0]), vm.Tail(12))
	if ready.MatchString(vm.Console()) || strings.Contains(vm.Console(), "Linux version") {
		t.Fatalf("a kernel started after the refusal:\n%s", vm.Tail(30))
	}
}

// tamperUKI copies the disk image src to dst with one byte of the UKI's
// .linux section flipped where the UKI's file sits in the ESP (go-diskfs lays
// a new file out in consecutive clusters, so its bytes are found whole).
func tamperUKI(t *testing.T, src, ukiPath, dst string) {
	t.Helper()
	uki, err := os.ReadFile(ukiPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(ukiPath)
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section(".linux")
	f.Close()
	if sec == nil {
		t.Fatal("UKI has no .linux section")
	}
	off := int64(sec.Offset) + int64(sec.Size)/2
	probe := uki[off-256 : off+256]
	img, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(img, probe)
	if at < 0 {
		t.Fatal("the UKI's kernel bytes are not in the disk image")
	}
	img[at+256] ^= 0x01
	if err := os.WriteFile(dst, img, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signedBuild builds the default config signed with the snakeoil key into a
// temporary directory. It shares the user's build cache (as `make image`
// fills it) so PID 1 is not compiled again.
func signedBuild(t *testing.T) string {
	t.Helper()
	needTool(t, "sbsign", "sbsigntool")
	openssl := needTool(t, "openssl", "openssl")
	const snakeoil = "/usr/share/ovmf/PkKek-1-snakeoil"
	if _, err := os.Stat(snakeoil + ".key"); err != nil {
		t.Fatalf("%s.key missing: apt-get install ovmf", snakeoil)
	}
	tmp := t.TempDir()
	// Debian ships the snakeoil key encrypted with the pass phrase "snakeoil"
	// (ovmf's README.Debian); the build takes plain keys.
	key := filepath.Join(tmp, "db.key")
	if out, err := exec.Command(openssl, "pkey", "-in", snakeoil+".key", "-passin", "pass:snakeoil", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("decrypt the snakeoil key: %v\n%s", err, out)
	}
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	if _, err := build.Run(build.Options{OutDir: out, SourceDir: sourceDir(t), Cache: c, Epoch: epoch(t),
		SignKey: key, SignCert: snakeoil + ".pem"}); err != nil {
		t.Fatalf("signed build: %v", err)
	}
	return out
}

// TestESPChecks checks the ESP of out/hardvisor.img without QEMU: the GPT has
// the one ESP at 1 MiB with the derived GUIDs, the partition passes
// `fsck.vfat -n`, and it holds exactly systemd-boot (twice), loader.conf and
// the UKI of out/ as the version's entry with 3 tries; the ISO's boot image
// holds the UKI as the removable-media loader.
func TestESPChecks(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT")
	m := readManifest(t, dir)
	fsck := needTool(t, "fsck.vfat", "dosfstools")
	needTool(t, "mcopy", "mtools")
	img := filepath.Join(dir, build.DiskImage)

	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	parts := d.Table.GetPartitions()
	var start, size int64
	if len(parts) >= 1 {
		start, size = parts[0].GetStart(), parts[0].GetSize()
	}
	d.Close()
	if start != disk.ESPStart || size != disk.ESPSize {
		t.Fatalf("ESP at %d+%d, want %d+%d", start, size, disk.ESPStart, disk.ESPSize)
	}
	esp := extract(t, img, start, size)
	if out, err := exec.Command(fsck, "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n on the ESP: %v\n%s", err, out)
	}
	entry := disk.EntriesDir + "/" + disk.EntryName(m.Version, disk.Tries)
	for path, want := range map[string]string{
		disk.BootPath:        disk.DefaultBootloader,
		disk.SystemdBootPath: disk.DefaultBootloader,
		entry:                filepath.Join(dir, build.UKI),
	} {
		got := mcopy(t, esp, path)
		w, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("ESP %s (%d bytes) differs from %s (%d bytes)", path, len(got), want, len(w))
		}
	}
	if got := string(mcopy(t, esp, disk.LoaderConfPath)); got != disk.LoaderConf {
		t.Errorf("loader.conf = %q, want %q", got, disk.LoaderConf)
	}
	if a, ok := m.Artifact(build.DiskImage); !ok || a.Size != disk.Size {
		t.Errorf("manifest entry for %s = %+v, want size %d", build.DiskImage, a, disk.Size)
	}
	for _, name := range []string{build.ISO, build.PXEDir + "/boot.ipxe"} {
		if _, ok := m.Artifact(name); !ok {
			t.Errorf("manifest lacks %s", name)
		}
	}

	// The ISO: the El Torito image is the only file; it holds the UKI.
	isoPath := filepath.Join(dir, build.ISO)
	id, err := diskfs.Open(isoPath, diskfs.WithOpenMode(diskfs.ReadOnly), diskfs.WithSectorSize(2048))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := id.GetFilesystem(0)
	if err != nil {
		t.Fatal(err)
	}
	bf, err := fs.OpenFile("/"+iso.BootImage, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(t.TempDir(), "efiboot.img")
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(bf); err != nil {
		t.Fatal(err)
	}
	id.Close()
	if err := os.WriteFile(boot, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fsck, "-n", boot).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n on the ISO's boot image: %v\n%s", err, out)
	}
	w, _ := os.ReadFile(filepath.Join(dir, build.UKI))
	if got := mcopy(t, boot, iso.BootPath); !bytes.Equal(got, w) {
		t.Errorf("ISO boot image %s differs from the UKI", iso.BootPath)
	}
}

// extract copies size bytes at start of img into a temporary file.
func extract(t *testing.T, img string, start, size int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	b := make([]byte, size)
	if _, err := in.ReadAt(b, start); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "esp.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mcopy reads one file out of a FAT image with mtools.
func mcopy(t *testing.T, fat, path string) []byte {
	t.Helper()
	out, err := exec.Command("mcopy", "-n", "-i", fat, "::/"+path, "-").Output()
	if err != nil {
		t.Fatalf("mcopy %s from %s: %v", path, fat, err)
	}
	return out
}
