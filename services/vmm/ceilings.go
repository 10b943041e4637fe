package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/cgroups"
)

// Ceilings are a guest's cgroup v2 ceilings as its group's files read
// (trimmed; IOMax only the line of the data disk, "" when it has none).
type Ceilings struct {
	CPUMax    string `json:"cpu.max"`
	CPUWeight string `json:"cpu.weight"`
	MemoryMax string `json:"memory.max"`
	IOMax     string `json:"io.max"`
	PIDsMax   string `json:"pids.max"`
}

// pageSize is what the kernel rounds memory.max down to.
const pageSize = 4096

// WantCeilings gives the files' contents for limits l: what libvirt writes
// from the domain's tunables (Domain) and vmm writes itself (pids.max).
// dev is the data disk's MAJ:MIN; empty when there is none.
func WantCeilings(l config.Limits, dev string) Ceilings {
	c := Ceilings{
		CPUMax:    "max " + strconv.Itoa(cgroups.CPUPeriod),
		CPUWeight: strconv.Itoa(max(l.CPUWeight, 1)),
		MemoryMax: "max",
		PIDsMax:   "max",
	}
	if l.CPU > 0 {
		c.CPUMax = fmt.Sprintf("%d %d", max(int64(l.CPU)*cgroups.CPUPeriod/100, cgroups.MinCPUQuota), cgroups.CPUPeriod)
	}
	if l.Memory > 0 {
		// libvirt keeps KiB; the kernel keeps whole pages.
		c.MemoryMax = strconv.FormatUint(kib(l.Memory)*1024/pageSize*pageSize, 10)
	}
	if dev != "" && (l.IOPS > 0 || l.Bandwidth > 0) {
		c.IOMax = fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s", dev,
			maxOr(int64(l.Bandwidth)), maxOr(int64(l.Bandwidth)), maxOr(int64(l.IOPS)), maxOr(int64(l.IOPS)))
	}
	if l.PIDs > 0 {
		c.PIDsMax = strconv.Itoa(l.PIDs)
	}
	return c
}

func maxOr(n int64) string {
	if n <= 0 {
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// Diff lists the files whose contents differ from want, as
// "cpu.max: want 150000 100000, reads max 100000".
func (c Ceilings) Diff(want Ceilings) []string {
	var out []string
	for _, f := range []struct{ name, got, want string }{
		{"cpu.max", c.CPUMax, want.CPUMax},
		{"cpu.weight", c.CPUWeight, want.CPUWeight},
		{"memory.max", c.MemoryMax, want.MemoryMax},
		{"io.max", c.IOMax, want.IOMax},
		{"pids.max", c.PIDsMax, want.PIDsMax},
	} {
		if f.got != f.want {
			out = append(out, fmt.Sprintf("%s: want %q, reads %q", f.name, f.want, f.got))
		}
	}
	return out
}

// ReadCeilings reads the ceilings of the cgroup at dir; dev selects the
// io.max line (MAJ:MIN).
func ReadCeilings(dir, dev string) (Ceilings, error) {
	var c Ceilings
	var errs []error
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
		}
		return strings.TrimSpace(string(b))
	}
	c.CPUMax = read("cpu.max")
	c.CPUWeight = read("cpu.weight")
	c.MemoryMax = read("memory.max")
	c.PIDsMax = read("pids.max")
	io := read("io.max")
	if dev != "" {
		for _, line := range strings.Split(io, "\n") {
			if strings.HasPrefix(line, dev+" ") {
				c.IOMax = strings.TrimSpace(line)
			}
		}
	}
	return c, errors.Join(errs...)
}

// ParseDomainCgroup finds a libvirt domain's group in a /proc/PID/cgroup
// file of one of its processes: the cgroup v2 path up to the component
// libvirt names "<machine>.libvirt-qemu" ("/machine/qemu-1-web.libvirt-qemu"
// for "0::/machine/qemu-1-web.libvirt-qemu/emulator").
func ParseDomainCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		path, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		parts := strings.Split(path, "/")
		for i, p := range parts {
			if strings.HasSuffix(p, ".libvirt-qemu") {
				return strings.Join(parts[:i+1], "/"), nil
			}
		}
		return "", fmt.Errorf("cgroup %s is no libvirt domain group (no cgroup v2 controllers here?)", path)
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 entry")
}

// ParseMemoryEvents reads a memory.events file ("oom_kill 1" lines).
func ParseMemoryEvents(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("memory.events %q: %w", sc.Text(), err)
		}
		out[k] = n
	}
	return out, sc.Err()
}

// BlockDevice is the whole disk a file system lives on.
type BlockDevice struct {
	// Path is its device node (/dev/vda), Dev its MAJ:MIN ("254:0").
	Path string
	Dev  string
}

// WholeDisk finds the whole disk holding device major:minor through sysfs
// (/sys): io.max takes only whole disks, so a partition gives its parent.
func WholeDisk(sysfs string, major, minor uint32) (BlockDevice, error) {
	link := filepath.Join(sysfs, "dev/block", fmt.Sprintf("%d:%d", major, minor))
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return BlockDevice{}, fmt.Errorf("device %d:%d is no block device: %w", major, minor, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		dir = filepath.Dir(dir)
	}
	dev, err := os.ReadFile(filepath.Join(dir, "dev"))
	if err != nil {
		return BlockDevice{}, fmt.Errorf("block device %s: %w", dir, err)
	}
	name := filepath.Base(dir)
	if ue, err := os.ReadFile(filepath.Join(dir, "uevent")); err == nil {
		for _, line := range strings.Split(string(ue), "\n") {
			if v, ok := strings.CutPrefix(line, "DEVNAME="); ok {
				name = v
			}
		}
	}
	return BlockDevice{Path: "/dev/" + name, Dev: strings.TrimSpace(string(dev))}, nil
}
