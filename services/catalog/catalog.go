// Package catalog is the list of services a host runs: the built-in ones,
// declared in code, and those the config adds, turned into the service
// manager's specs. The builder checks the list (dependencies, cycles,
// reservations, programs in the image) before it writes an image; PID 1 runs
// the same list.
package catalog

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/selinux"
	"hardvisor.dev/hardvisor/init/network"
	"hardvisor.dev/hardvisor/services/cgroups"
	"hardvisor.dev/hardvisor/services/supervise"
)

// Env is the environment every service starts with; a config service's env
// entries come after it.
var Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin", "HOME=/"}

// Paths in the image of the management API service and its certificates.
const (
	// Mgmtd is the management API's program (a command of the busybox).
	Mgmtd = "/bbin/mgmtd"
	// PKIDir holds ca.pem, server.pem and server-key.pem, which the build
	// copies from management.api.clientCA, serverCert and serverKey.
	PKIDir = "/etc/hardvisor/pki"
	// AuditDir holds mgmtd's audit log, on the data partition; without one
	// it is in the image's memory and lasts until the next boot.
	AuditDir = config.DataDir + "/audit"
)

// Paths of the hypervisor services and their payload, which an image with
// guests carries (image/hypervisor puts them there).
const (
	// Libvirtd is libvirt's daemon; LibvirtSocket its read-write socket.
	Libvirtd      = "/usr/sbin/libvirtd"
	LibvirtSocket = "/run/libvirt/libvirt-sock"
	// PayloadImage is the squashfs holding QEMU and libvirt inside the
	// initramfs; PID 1 mounts it read-only on PayloadDir, where each
	// payload file's own path in the image points.
	PayloadImage = "/usr/lib/hardvisor/payload.squashfs"
	PayloadDir   = "/usr/lib/hardvisor/payload"
	// Vmmd is the guests' service program (a command of the busybox);
	// VmmSocket its API, for ControlGID.
	Vmmd      = "/bbin/vmmd"
	VmmSocket = "/run/hardvisor/vmm.sock"
)

// GuestShutdown is how long guests have to power off by ACPI when the host
// stops before they are destroyed.
const GuestShutdown = 30 * time.Second

// Identities of the built-in services: none runs as root.
const (
	// MgmtdUID and MgmtdGID are mgmtd's user and group; the group may read
	// the API's server key.
	MgmtdUID, MgmtdGID = 900, 900
	// ControlGID is the group that may use PID 1's control socket (mgmtd
	// holds it as a supplementary group; root always may).
	ControlGID = 901
)

// Builtin gives the services hardvisor itself runs: mgmtd, the management
// API, in the management namespace, when the config turns the API on. It
// runs as MgmtdUID with no capabilities (CAP_NET_BIND_SERVICE alone for a
// port below 1024), owns AuditDir, and reaches PID 1 through ControlGID.
// A config with guests adds the hypervisor services.
func Builtin(c *config.Config) []supervise.Spec {
	var specs []supervise.Spec
	if api := c.Management.API; api.ClientCA != "" {
		argv := []string{Mgmtd, "--port", strconv.Itoa(api.Port), "--pki", PKIDir}
		if c.Management.Syslog != "" {
			argv = append(argv, "--syslog", c.Management.Syslog)
		}
		if len(c.Guests) > 0 {
			argv = append(argv, "--vmm", VmmSocket)
		}
		caps := []string{}
		if api.Port < 1024 {
			caps = append(caps, "CAP_NET_BIND_SERVICE")
		}
		specs = append(specs, supervise.Spec{
			Name:            "mgmtd",
			Command:         argv,
			Env:             Env,
			Dir:             "/",
			NetNS:           network.NamespacePath,
			User:            &supervise.User{UID: MgmtdUID, GID: MgmtdGID, Groups: []uint32{ControlGID}},
			Capabilities:    caps,
			StateDirs:       []string{AuditDir},
			NoNewPrivileges: true,
			SELinuxLabel:    selinux.MgmtLabel,
			Required:        true,
			Ready:           &supervise.Probe{Check: supervise.TCPListen{Port: api.Port}},
			Cgroup:          cgroups.Limits{MemoryMin: 32 * config.Mi, MemoryMax: 128 * config.Mi, PIDsMax: 256},
		})
	}
	if len(c.Guests) > 0 {
		specs = append(specs, hypervisor()...)
	}
	return specs
}

// hypervisor gives the services of a host with guests: libvirtd, as root
// with every capability (it creates taps, cgroups and mount namespaces for
// QEMU, raises QEMU's locked-memory limit and labels guests), on its unix
// socket alone; and vmm, which runs the config's guests through it and
// shuts them down (ACPI, then destroy after GuestShutdown) before the
// service manager stops libvirtd.
func hypervisor() []supervise.Spec {
	return []supervise.Spec{{
		Name:     "libvirtd",
		Command:  []string{Libvirtd},
		Env:      Env,
		Dir:      "/",
		Required: true,
		Ready:    &supervise.Probe{Check: supervise.FileExists{Path: LibvirtSocket}},
		Cgroup:   cgroups.Limits{MemoryMin: 64 * config.Mi, MemoryMax: 512 * config.Mi, PIDsMax: 1024},
	}, {
		Name: "vmm",
		Command: []string{Vmmd, "--socket", LibvirtSocket, "--listen", VmmSocket,
			"--group", strconv.Itoa(ControlGID), "--shutdown-timeout", GuestShutdown.String()},
		Env:      Env,
		Dir:      "/",
		After:    []string{"libvirtd"},
		Requires: []string{"libvirtd"},
		// Guest disks are on the data partition.
		Conditions: []supervise.Condition{supervise.Mounted{Path: config.DataDir}},
		// nftables and bridge ports; the API socket's group; the guests'
		// files, which libvirt hands to libvirt-qemu (console logs).
		Capabilities:    []string{"CAP_NET_ADMIN", "CAP_CHOWN", "CAP_DAC_READ_SEARCH"},
		NoNewPrivileges: true,
		Required:        true,
		Ready:           &supervise.Probe{Check: supervise.FileExists{Path: VmmSocket}},
		StopTimeout:     GuestShutdown + 10*time.Second,
		Cgroup:          cgroups.Limits{MemoryMin: 16 * config.Mi, MemoryMax: 128 * config.Mi, PIDsMax: 256},
	}}
}

// Specs gives every service of c: the built-in ones, then the config's in
// declaration order. It fails on a config the service manager cannot run,
// naming the field.
func Specs(c *config.Config) ([]supervise.Spec, error) {
	specs := Builtin(c)
	for i, s := range c.Services {
		spec, err := fromConfig(s)
		if err != nil {
			return nil, fmt.Errorf("services[%d]: %w", i, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// Check is the builder's check of the whole list: what supervise.Validate
// finds (dependency cycles across built-in and config services, unknown
// capabilities) and the reservations against the host reserve.
func Check(c *config.Config) ([]supervise.Spec, error) {
	specs, err := Specs(c)
	if err != nil {
		return nil, err
	}
	if err := supervise.Validate(specs); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	limits := map[string]cgroups.Limits{}
	for _, s := range specs {
		limits[s.Name] = s.Cgroup
	}
	if err := cgroups.CheckReserve(c.Resources, limits); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	return specs, nil
}

func fromConfig(s config.Service) (supervise.Spec, error) {
	spec := supervise.Spec{
		Name:            s.Name,
		Command:         slices.Clone(s.Command),
		Env:             slices.Concat(Env, s.Env),
		Dir:             "/",
		After:           slices.Clone(s.After),
		Requires:        slices.Clone(s.Requires),
		Capabilities:    slices.Clone(s.Capabilities),
		NoNewPrivileges: true,
		Required:        !s.Optional,
		StopTimeout:     s.StopTimeout.D(),
		Backoff:         supervise.Backoff{Initial: s.Backoff.Initial.D(), Max: s.Backoff.Max.D(), ResetAfter: s.Backoff.ResetAfter.D()},
		Breaker:         supervise.Breaker{MaxRestarts: s.Breaker.Restarts, Window: s.Breaker.Window.D()},
		Cgroup: cgroups.Limits{
			MemoryMin: s.Limits.MemoryMin,
			MemoryMax: s.Limits.MemoryMax,
			CPUWeight: uint64(s.Limits.CPUWeight),
			PIDsMax:   int64(s.Limits.PIDs),
		},
		Ready:  probe(s.Ready),
		Health: probe(s.Health),
	}
	switch s.Restart {
	case config.RestartAlways, "":
		spec.Restart = supervise.Always
	case config.RestartOnFailure:
		spec.Restart = supervise.OnFailure
	case config.RestartNever:
		spec.Restart = supervise.Never
	default:
		return spec, fmt.Errorf("restart: unknown policy %q", s.Restart)
	}
	if s.NeedsData {
		spec.Conditions = append(spec.Conditions, supervise.Mounted{Path: config.DataDir})
	}
	if s.User != "" {
		u, err := parseUser(s.User)
		if err != nil {
			return spec, fmt.Errorf("user: %w", err)
		}
		spec.User = u
	}
	return spec, nil
}

func probe(p *config.Probe) *supervise.Probe {
	if p == nil {
		return nil
	}
	out := &supervise.Probe{Interval: p.Interval.D(), Timeout: p.Timeout.D(), FailureThreshold: p.Failures}
	switch {
	case len(p.Exec) > 0:
		out.Check = supervise.Exec{Command: slices.Clone(p.Exec)}
	case p.TCP != 0:
		out.Check = supervise.TCPListen{Port: p.TCP}
	default:
		out.Check = supervise.FileExists{Path: p.File}
	}
	return out
}

func parseUser(s string) (*supervise.User, error) {
	us, gs, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(us, 10, 32)
	gid, err2 := strconv.ParseUint(gs, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q is not UID:GID", s)
	}
	return &supervise.User{UID: uint32(uid), GID: uint32(gid)}, nil
}
