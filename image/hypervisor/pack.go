package hypervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/rootfs"
)

// packFormat names how Pack builds the image; changing the mksquashfs
// arguments must change it so cached images of the old form are not used.
const packFormat = "squashfs 2: xz bcj-x86 1M all-root no-xattrs"

const cacheKind = "payload"

// Mksquashfs is squashfs-tools' packer.
const Mksquashfs = "mksquashfs"

// Exclusive lists the files of payload (a tree holding only the payload)
// that base, the rest of the image, does not hold: what Pack moves into the
// squashfs. Shared files (the C library) stay in the initramfs, where PID 1
// and the programs it runs before the mount need them.
func Exclusive(payload, base *rootfs.Tree) []rootfs.Entry {
	var out []rootfs.Entry
	for _, e := range payload.Entries() {
		if e.Kind != rootfs.File {
			continue
		}
		if _, ok := base.Lookup(e.Path); !ok {
			out = append(out, e)
		}
	}
	return out
}

// Pack puts files (entries of t, from Exclusive) into a squashfs image,
// served from c when the same files were packed before, and returns the
// image's path in the cache and the tree to write into the initramfs: t with
// each of files replaced by a symlink into MountDir and with the mount point
// added. The image itself goes into the initramfs beside that tree (see
// Segment), not through its compressor.
func Pack(t *rootfs.Tree, files []rootfs.Entry, c cache.Cache, epoch int64) (image string, out *rootfs.Tree, err error) {
	if _, err := exec.LookPath(Mksquashfs); err != nil {
		return "", nil, fmt.Errorf("%s missing: apt-get install squashfs-tools", Mksquashfs)
	}
	key, err := packKey(files, epoch)
	if err != nil {
		return "", nil, err
	}
	dir, ok := c.Lookup(cacheKind, key)
	if !ok {
		if dir, err = build(files, c, key, epoch); err != nil {
			return "", nil, err
		}
	}
	moved := map[string]bool{}
	for _, f := range files {
		moved[f.Path] = true
	}
	out = rootfs.New()
	for _, e := range t.Entries() {
		if moved[e.Path] {
			e = rootfs.Entry{Path: e.Path, Kind: rootfs.Symlink, Target: MountDir + "/" + e.Path}
		}
		if err := out.Add(e); err != nil {
			return "", nil, err
		}
	}
	if err := out.AddDir(MountDir, 0o755); err != nil {
		return "", nil, err
	}
	_ = c.Prune(cacheKind, 4)
	return filepath.Join(dir, "payload.squashfs"), out, nil
}

// Segment is the initramfs segment that carries the packed image: a tree
// holding it alone, written uncompressed after the compressed main archive
// (the image is compressed already; the kernel unpacks concatenated
// archives one after the other).
func Segment(image string) (*rootfs.Tree, error) {
	t := rootfs.New()
	if err := t.AddFile(ImagePath, image, 0o444); err != nil {
		return nil, err
	}
	return t, nil
}

func packKey(files []rootfs.Entry, epoch int64) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nepoch %d\n", packFormat, epoch)
	for _, f := range files {
		fmt.Fprintf(h, "%s %o %d\n", f.Path, f.Mode, len(f.Data))
		h.Write(f.Data)
		if f.Source != "" {
			in, err := os.Open(f.Source)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, in)
			in.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// build stages files in a temporary directory and packs them.
func build(files []rootfs.Entry, c cache.Cache, key string, epoch int64) (string, error) {
	dir, err := c.TempDir(cacheKind)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir) // a no-op once stored
	stage := filepath.Join(dir, "root")
	for _, f := range files {
		dst := filepath.Join(stage, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := stageFile(f, dst); err != nil {
			return "", fmt.Errorf("payload: %w", err)
		}
	}
	// Every directory and file time is the epoch: the image is the same
	// bytes from the same files.
	if err := filepath.Walk(stage, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, unixTime(epoch), unixTime(epoch))
	}); err != nil {
		return "", err
	}
	img := filepath.Join(dir, "payload.squashfs")
	cmd := exec.Command(Mksquashfs, stage, img, "-noappend", "-quiet", "-no-progress",
		// xz with its x86 filter packs QEMU and libvirt 12% smaller
		// than zstd -19 (25.7 MB against 29.2 MB); the host pays for it
		// once per page it reads, and keeps the pages it uses cached.
		"-comp", "xz", "-Xbcj", "x86", "-b", "1M",
		"-all-root", "-no-xattrs", "-mkfs-time", strconv.FormatInt(epoch, 10), "-all-time", strconv.FormatInt(epoch, 10))
	// mksquashfs refuses -mkfs-time beside SOURCE_DATE_EPOCH.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") })
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mksquashfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	return c.Store(cacheKind, key, dir)
}

func stageFile(f rootfs.Entry, dst string) error {
	if f.Source == "" {
		return os.WriteFile(dst, f.Data, f.Mode.Perm())
	}
	in, err := os.Open(f.Source)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, f.Mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, f.Mode.Perm())
}

func unixTime(s int64) time.Time { return time.Unix(s, 0) }
