package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/kernfs"
)

// Mount is where PID 1 mounts cgroup2.
const Mount = "/sys/fs/cgroup"

// Tree is hardvisor's cgroup tree under a cgroup2 mount.
type Tree struct {
	mount string
	// NoRoom says why machine/ is closed when the reserve fills the machine
	// (see MachineResources); nil when guests have room.
	NoRoom error
}

// Open creates hardvisor.slice (memory.min = the reserve) and machine/ (the
// guests' ceiling, see MachineResources) under mount, enabling the controllers
// they need in cgroup.subtree_control up the tree. m is the machine's measured
// size, used where resources.host is unset.
func Open(mount string, r config.Resources, m Size) (*Tree, error) {
	mres, noRoom := MachineResources(r, m)
	if err := create(mount, Slice, SliceResources(r)); err != nil {
		return nil, err
	}
	if err := create(mount, Machine, mres); err != nil {
		return nil, err
	}
	// libvirt sets each guest's ceilings in machine/<guest>: the root and
	// machine/ pass it every controller those need.
	for _, dir := range []string{mount, filepath.Join(mount, Machine)} {
		if err := enableControllers(dir, MachineControllers); err != nil {
			return nil, err
		}
	}
	return &Tree{mount: mount, NoRoom: noRoom}, nil
}

// MachineControllers are the controllers of the guests' ceilings: cpu.max
// and cpu.weight, memory.max, io.max, pids.max.
var MachineControllers = []string{"cpu", "memory", "io", "pids"}

// enableControllers turns ctrls on in dir's cgroup.subtree_control.
func enableControllers(dir string, ctrls []string) error {
	var b strings.Builder
	for _, c := range ctrls {
		b.WriteString("+" + c + " ")
	}
	if err := kernfs.Write(filepath.Join(dir, "cgroup.subtree_control"), strings.TrimSpace(b.String())); err != nil {
		return fmt.Errorf("enable controllers %v in %s: %w", ctrls, dir, err)
	}
	return nil
}

// Place creates (or updates) hardvisor.slice/<name> with l (DefaultLimits for
// zero fields) and opens it for starting children inside it.
func (t *Tree) Place(name string, l Limits) (*Group, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("cgroup for service %q: not a valid group name", name)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("cgroup for service %q: %w", name, err)
	}
	return newGroup(t.mount, Slice+"/"+name, ServiceResources(l))
}

// Group is one open cgroup.
type Group struct {
	path string
	dir  *os.File
}

// create makes the group at rel under mount (or keeps the one there),
// enables the controllers res needs in every group above it, from the
// mount's root down, and writes res. A group it made and could not set up
// is removed again.
func create(mount, rel string, res Resources) error {
	path := filepath.Join(mount, rel)
	err := os.Mkdir(path, 0o755)
	made := err == nil
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", rel, err)
	}
	if err = setUp(mount, rel, res); err != nil && made {
		os.Remove(path)
	}
	return err
}

func setUp(mount, rel string, res Resources) error {
	if ctrls := res.Controllers(); len(ctrls) > 0 {
		// Each group above rel, from the root down, passes them on.
		above := []string{mount}
		if d := filepath.Dir(rel); d != "." {
			for _, part := range strings.Split(d, "/") {
				above = append(above, filepath.Join(above[len(above)-1], part))
			}
		}
		for _, dir := range above {
			if err := enableControllers(dir, ctrls); err != nil {
				return err
			}
		}
	}
	for _, s := range res {
		if err := kernfs.Write(filepath.Join(mount, rel, s.File), s.Value); err != nil {
			return fmt.Errorf("cgroup %s: write %s %q: %w", rel, s.File, s.Value, err)
		}
	}
	return nil
}

// newGroup creates the group at rel under mount with res and opens it.
func newGroup(mount, rel string, res Resources) (*Group, error) {
	if err := create(mount, rel, res); err != nil {
		return nil, err
	}
	path := filepath.Join(mount, rel)
	// O_PATH is enough for clone3's CLONE_INTO_CGROUP and keeps the fd from
	// being usable for anything else.
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", rel, err)
	}
	return &Group{path: path, dir: os.NewFile(uintptr(fd), path)}, nil
}

// Path is the group's directory.
func (g *Group) Path() string { return g.path }

// FD is an open directory fd of the group for SysProcAttr.CgroupFD (with
// UseCgroupFD), so a child is born inside the group: nothing it does runs
// outside it, even before exec. Valid until Close.
func (g *Group) FD() int { return int(g.dir.Fd()) }

// Usage reads memory.current, pids.current and cpu.stat. A file a controller
// that is not enabled would provide reads as zero.
func (g *Group) Usage() (Usage, error) {
	var u Usage
	var errs []error
	read := func(file string, parse func(f *os.File) error) {
		f, err := os.Open(filepath.Join(g.path, file))
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err == nil {
			err = parse(f)
			f.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", filepath.Join(g.path, file), err))
		}
	}
	read("memory.current", func(f *os.File) (err error) { u.Memory, err = ParseUint(f); return })
	read("pids.current", func(f *os.File) (err error) { u.PIDs, err = ParseUint(f); return })
	read("cpu.stat", func(f *os.File) (err error) { u.CPU, err = ParseCPUUsage(f); return })
	return u, errors.Join(errs...)
}

// Kill kills every process in the group (cgroup.kill, Linux 5.14+).
func (g *Group) Kill() error {
	if err := os.WriteFile(filepath.Join(g.path, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", g.path, err)
	}
	return nil
}

// Close closes the group's fd; the group itself stays.
func (g *Group) Close() error { return g.dir.Close() }
