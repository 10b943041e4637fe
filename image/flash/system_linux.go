package flash

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// System is where the running system's block devices, mounts and swap are
// read from, so tests can describe a machine without being root.
type System struct {
	// Proc is procfs (mountinfo of this process, swaps); empty means /proc.
	Proc string
	// Sys is sysfs (dev/block, class/block); empty means /sys.
	Sys string
}

func (s System) proc() string {
	if s.Proc == "" {
		return "/proc"
	}
	return s.Proc
}

func (s System) sys() string {
	if s.Sys == "" {
		return "/sys"
	}
	return s.Sys
}

// blockDir is a device's directory in sysfs.
func (s System) blockDir(dev string) (string, error) {
	p, err := filepath.EvalSymlinks(filepath.Join(s.sys(), "dev", "block", dev))
	if err != nil {
		return "", fmt.Errorf("block device %s not in sysfs: %w", dev, err)
	}
	return p, nil
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func isPartition(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "partition"))
	return err == nil
}

// checkDevice refuses a partition, the disk holding /, and a disk any part of
// which (itself, a partition, or a device stacked on them such as dm-crypt,
// LVM or md) is mounted or used as swap.
func (s System) checkDevice(target, dev string) error {
	dir, err := s.blockDir(dev)
	if err != nil {
		return err
	}
	name := filepath.Base(dir)
	if isPartition(dir) {
		return &RefusedError{target, fmt.Sprintf("%s is a partition of %s: give the whole disk", name, filepath.Base(filepath.Dir(dir)))}
	}
	mounts, err := s.mounts()
	if err != nil {
		return err
	}
	if rootDev, ok := mounts.at("/"); ok {
		for _, d := range s.disksUnder(rootDev, 0) {
			if d == dev {
				return &RefusedError{target, fmt.Sprintf("%s is the disk the running system's root file system (/) is on", name)}
			}
		}
	}
	users := s.users(dir, map[string]bool{})
	swaps := s.swaps()
	var devs []string
	for d := range users {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, d := range devs {
		if mp := mounts.of(d); len(mp) > 0 {
			return &RefusedError{target, fmt.Sprintf("%s is mounted at %s: unmount it first", users[d], strings.Join(mp, ", "))}
		}
		if swaps[d] {
			return &RefusedError{target, fmt.Sprintf("%s is in use as swap", users[d])}
		}
	}
	return nil
}

// users maps the device numbers of a disk, its partitions and everything
// stacked on them (holders) to their names.
func (s System) users(dir string, seen map[string]bool) map[string]string {
	out := map[string]string{}
	if seen[dir] {
		return out
	}
	seen[dir] = true
	if dev := readTrim(filepath.Join(dir, "dev")); dev != "" {
		out[dev] = filepath.Base(dir)
	}
	var subs []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if sub := filepath.Join(dir, e.Name()); isPartition(sub) {
			subs = append(subs, sub)
		}
	}
	holders, _ := os.ReadDir(filepath.Join(dir, "holders"))
	for _, h := range holders {
		if p, err := filepath.EvalSymlinks(filepath.Join(dir, "holders", h.Name())); err == nil {
			subs = append(subs, p)
		}
	}
	for _, sub := range subs {
		for d, n := range s.users(sub, seen) {
			out[d] = n
		}
	}
	return out
}

// disksUnder returns the whole disks a device lives on: itself, the disk of a
// partition, the disks under a device-mapper or md device's slaves.
func (s System) disksUnder(dev string, depth int) []string {
	dir, err := s.blockDir(dev)
	if err != nil || depth > 16 {
		return nil
	}
	if isPartition(dir) {
		if d := readTrim(filepath.Join(filepath.Dir(dir), "dev")); d != "" {
			return s.disksUnder(d, depth+1)
		}
		return nil
	}
	slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
	if len(slaves) == 0 {
		return []string{dev}
	}
	out := []string{dev}
	for _, sl := range slaves {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, "slaves", sl.Name()))
		if err != nil {
			continue
		}
		if d := readTrim(filepath.Join(p, "dev")); d != "" {
			out = append(out, s.disksUnder(d, depth+1)...)
		}
	}
	return out
}

func (s System) mounts() (mountTable, error) {
	f, err := os.Open(filepath.Join(s.proc(), "self", "mountinfo"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountInfo(f)
}

// swaps returns the device numbers of block devices in use as swap.
func (s System) swaps() map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(s.proc(), "swaps"))
	if err != nil {
		return out
	}
	for i, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if i == 0 || len(fields) < 2 || fields[1] != "partition" {
			continue
		}
		if d, err := deviceNumber(fields[0]); err == nil {
			out[d] = true
		}
	}
	return out
}

// mountTable is mountinfo's (device, mount point) pairs in order.
type mountTable []struct{ dev, point string }

// parseMountInfo reads proc_pid_mountinfo(5).
func parseMountInfo(r io.Reader) (mountTable, error) {
	var t mountTable
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		t = append(t, struct{ dev, point string }{f[2], unescapeOctal(f[4])})
	}
	return t, sc.Err()
}

// at returns the device mounted last (on top) at point.
func (t mountTable) at(point string) (string, bool) {
	dev, ok := "", false
	for _, m := range t {
		if m.point == point {
			dev, ok = m.dev, true
		}
	}
	return dev, ok
}

// of returns the mount points of dev.
func (t mountTable) of(dev string) []string {
	var out []string
	for _, m := range t {
		if m.dev == dev {
			out = append(out, m.point)
		}
	}
	return out
}

// unescapeOctal undoes mountinfo's \040-style escapes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deviceNumber is a block device's "major:minor".
func deviceNumber(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", path)
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))), nil
}

func deviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// openTarget opens a block device exclusively (the kernel then refuses it if
// anything holds it, e.g. a mount that appeared since Check), or creates and
// truncates a regular file.
func openTarget(path string) (*os.File, error) {
	if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeDevice != 0 {
		f, err := os.OpenFile(path, os.O_WRONLY|unix.O_EXCL, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s exclusively: %w", path, err)
		}
		return f, nil
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

// dropCache evicts f's cached pages so the read-back comes from the device.
func dropCache(f *os.File) {
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeDevice != 0 {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
