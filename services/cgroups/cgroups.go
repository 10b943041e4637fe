// Package cgroups lays out hardvisor's cgroup v2 tree:
//
//	hardvisor.slice/          memory.min = the host reserve
//	hardvisor.slice/<service> memory.min, memory.max, cpu.weight, pids.max per host service
//	machine/                  memory.max and cpu.max = the machine minus the reserve, for guests
//
// The resources are computed by pure functions (this file) that the tests
// check value by value, as the interface files and the values written to
// them; the Linux part (tree_linux.go) creates the groups, enabling the
// controllers they need up the tree, writes the files, hands out a directory
// fd so a child starts inside its group (SysProcAttr.UseCgroupFD) and reads
// usage back. cgroup v2 is files, so PID 1 needs no library for it.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/config"
)

// Group paths, relative to the cgroup2 mount.
const (
	// Slice holds one group per host service.
	Slice = "hardvisor.slice"
	// Machine holds the guests; libvirt without systemd places each guest at
	// machine/<name>.libvirt-qemu.
	Machine = "machine"
)

// CPUPeriod is the cpu.max period, in microseconds (the kernel's default).
const CPUPeriod = 100000

// MinCPUQuota is the smallest cpu.max quota the kernel accepts, in microseconds.
const MinCPUQuota = 1000

// Limits are one host service's cgroup settings. Zero fields take the value
// from DefaultLimits.
type Limits struct {
	// MemoryMin is memory.min, the memory reclaim never takes from the service.
	MemoryMin config.Size
	// MemoryMax is memory.max, beyond which the service is OOM-killed.
	MemoryMax config.Size
	// CPUWeight is cpu.weight, 1..10000 (100 is an even share).
	CPUWeight uint64
	// PIDsMax is pids.max, the ceiling on the service's processes and threads.
	PIDsMax int64
}

// DefaultLimits is what a service gets for the fields it leaves zero: no
// reservation, a 512Mi ceiling, an even CPU share and 1024 tasks.
var DefaultLimits = Limits{MemoryMin: 0, MemoryMax: 512 * config.Mi, CPUWeight: 100, PIDsMax: 1024}

// Size is the machine as measured at boot: its MemTotal and CPU count. It
// stands in for resources.host where the config leaves that unset.
type Size struct {
	// Memory is the machine's memory in bytes (MemTotal).
	Memory config.Size
	// CPUs is the count of online CPUs.
	CPUs int
}

// WithDefaults gives l with its zero fields taken from def.
func (l Limits) WithDefaults(def Limits) Limits {
	if l.MemoryMin == 0 {
		l.MemoryMin = def.MemoryMin
	}
	if l.MemoryMax == 0 {
		l.MemoryMax = def.MemoryMax
	}
	if l.CPUWeight == 0 {
		l.CPUWeight = def.CPUWeight
	}
	if l.PIDsMax == 0 {
		l.PIDsMax = def.PIDsMax
	}
	return l
}

// Validate reports settings the kernel would refuse or that contradict each other.
func (l Limits) Validate() error {
	var errs []error
	if l.MemoryMin < 0 || l.MemoryMax < 0 {
		errs = append(errs, errors.New("memory must not be negative"))
	}
	if l.MemoryMax > 0 && l.MemoryMin > l.MemoryMax {
		errs = append(errs, fmt.Errorf("memory.min %s exceeds memory.max %s", l.MemoryMin, l.MemoryMax))
	}
	if l.CPUWeight > 10000 {
		errs = append(errs, fmt.Errorf("cpu.weight %d is outside 1..10000", l.CPUWeight))
	}
	if l.PIDsMax < 0 {
		errs = append(errs, fmt.Errorf("pids.max %d must not be negative", l.PIDsMax))
	}
	return errors.Join(errs...)
}

// Setting is one interface file of a group and the value written to it.
type Setting struct{ File, Value string }

// Resources are a group's settings, written in order when it is created.
type Resources []Setting

// Controllers are the controllers the settings need (the files' prefixes,
// "memory.max" → memory), in order of first use.
func (r Resources) Controllers() []string {
	var out []string
	for _, s := range r {
		if c, _, ok := strings.Cut(s.File, "."); ok && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// ServiceResources gives the resources of hardvisor.slice/<service>: l with
// DefaultLimits applied. A zero memory.min is left unwritten (the kernel's
// default is 0), so a group needs no memory protection it did not ask for.
func ServiceResources(l Limits) Resources {
	l = l.WithDefaults(DefaultLimits)
	r := Resources{{"memory.max", num(int64(l.MemoryMax))}}
	if l.MemoryMin > 0 {
		r = append(r, Setting{"memory.min", num(int64(l.MemoryMin))})
	}
	r = append(r, Setting{"cpu.weight", strconv.FormatUint(l.CPUWeight, 10)})
	if l.PIDsMax > 0 {
		r = append(r, Setting{"pids.max", num(l.PIDsMax)})
	}
	return r
}

// SliceResources gives the resources of hardvisor.slice: memory.min is the
// host reserve, so guest memory pressure cannot reclaim the host services'
// memory (a child's memory.min only protects within its parent's).
func SliceResources(r config.Resources) Resources {
	return Resources{{"memory.min", num(int64(r.Reserve.Memory))}}
}

// MachineResources gives the resources of machine/, the guests' total
// ceiling: memory.max is the host memory minus the reserve and cpu.max allows
// the host CPUs minus the reserved ones ("300000 100000" for 3 CPUs).
// resources.host is the host's size where set; m fills in what it leaves zero.
//
// On a machine the reserve fills (a small test VM), it gives a closed
// ceiling, memory.max 0 and the smallest cpu.max, and an error saying why:
// no guest can run there, but the host itself can.
func MachineResources(r config.Resources, m Size) (Resources, error) {
	mem, cpus := r.Host.Memory, r.Host.CPUs
	if mem == 0 {
		mem = m.Memory
	}
	if cpus == 0 {
		cpus = m.CPUs
	}
	gmem, gcpus := mem-r.Reserve.Memory, cpus-r.Reserve.CPUs
	var errs []error
	if gmem <= 0 {
		errs = append(errs, fmt.Errorf("machine memory: host %s minus reserve %s leaves nothing for guests", mem, r.Reserve.Memory))
	}
	if gcpus <= 0 {
		errs = append(errs, fmt.Errorf("machine cpus: host %d minus reserve %d leaves nothing for guests", cpus, r.Reserve.CPUs))
	}
	cpuMax := func(quota int64) string { return fmt.Sprintf("%d %d", quota, CPUPeriod) }
	if err := errors.Join(errs...); err != nil {
		return Resources{{"memory.max", "0"}, {"cpu.max", cpuMax(MinCPUQuota)}}, err
	}
	return Resources{{"memory.max", num(int64(gmem))}, {"cpu.max", cpuMax(int64(gcpus) * CPUPeriod)}}, nil
}

func num(n int64) string { return strconv.FormatInt(n, 10) }

// CheckReserve reports host services whose reservations (memory.min, with
// DefaultLimits applied) add up to more than the host reserve: the kernel
// would cut their protection silently. Services are named in sorted order.
func CheckReserve(r config.Resources, services map[string]Limits) error {
	var total config.Size
	names := slices.Sorted(maps.Keys(services))
	var errs []error
	for _, n := range names {
		l := services[n]
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", n, err))
		}
		total += l.WithDefaults(DefaultLimits).MemoryMin
	}
	if total > r.Reserve.Memory {
		errs = append(errs, fmt.Errorf("services reserve %s of memory (memory.min of %s), more than resources.reserve.memory %s",
			total, strings.Join(names, ", "), r.Reserve.Memory))
	}
	return errors.Join(errs...)
}

// Usage is what a group is using now.
type Usage struct {
	// Memory is memory.current in bytes; 0 without the memory controller.
	Memory uint64
	// PIDs is pids.current; 0 without the pids controller.
	PIDs uint64
	// CPU is cpu.stat usage_usec, the CPU time used since the group was created.
	CPU time.Duration
}

// ParseUint reads a single-number cgroup file such as memory.current.
func ParseUint(r io.Reader) (uint64, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %q: %w", s, err)
	}
	return n, nil
}

// ParseCPUUsage reads usage_usec from a cpu.stat file.
func ParseCPUUsage(r io.Reader) (time.Duration, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != "usage_usec" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
		if err != nil {
			return 0, fmt.Errorf("cpu.stat usage_usec %q: %w", v, err)
		}
		return time.Duration(n) * time.Microsecond, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("cpu.stat has no usage_usec")
}
