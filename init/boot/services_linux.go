package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/catalog"
	"hardvisor.dev/hardvisor/services/cgroups"
	"hardvisor.dev/hardvisor/services/spawn"
	"hardvisor.dev/hardvisor/services/status"
	"hardvisor.dev/hardvisor/services/supervise"
)

// Services lays out the cgroup tree and starts the service manager with
// every built-in and config service, each in hardvisor.slice/<name>. The
// services come up in the background; HealthGate waits for them.
type Services struct {
	Host *Host
	// Spawner starts the services' processes: PID 1's reaper.
	Spawner spawn.Spawner
}

func (Services) String() string { return "services" }

// Run opens the tree and starts the supervisor. A machine the reserve fills
// gets a closed machine/ group, which is fine unless the config has guests.
func (s Services) Run() error {
	h := s.Host
	size, err := machineSize("/proc/meminfo")
	if err != nil {
		return err
	}
	tree, err := cgroups.Open(cgroups.Mount, h.Config.Resources, size)
	if err != nil {
		return err
	}
	if tree.NoRoom != nil {
		if len(h.Config.Guests) > 0 {
			return fmt.Errorf("the config has guests but %w", tree.NoRoom)
		}
		h.Machine = strings.ReplaceAll(tree.NoRoom.Error(), "\n", "; ")
		h.Logf("machine/ closed: %s", h.Machine)
	}
	specs, err := catalog.Specs(h.Config)
	if err != nil {
		return err
	}
	sup := supervise.New(supervise.Options{
		Services:     specs,
		Spawner:      s.Spawner,
		Placer:       supervise.TreePlacer(tree),
		Console:      h.Console,
		OnTransition: h.logTransition,
	})
	if err := sup.Start(context.Background()); err != nil {
		return err
	}
	h.Supervisor = sup
	return nil
}

// logTransition prints a service's change of state with what explains it.
func (h *Host) logTransition(t supervise.Transition) {
	st := t.Status
	var detail string
	switch t.To {
	case supervise.StateRunning, supervise.StateReady:
		detail = fmt.Sprintf(" pid=%d", st.Pid)
	case supervise.StateBackoff:
		detail = fmt.Sprintf(" after %s; restart %d in %s", st.LastExit, st.Restarts, st.RestartDelay)
	case supervise.StateFailed, supervise.StateExited, supervise.StateStopped:
		if st.LastExit != nil {
			detail = " after " + st.LastExit.String()
		}
		if st.Reason != "" {
			detail += ": " + st.Reason
		}
	}
	h.Logf("service %s: %s%s (t=%.3fs)", t.Service, t.To, detail, t.At.Sub(h.Started).Seconds())
}

// machineSize reads MemTotal from meminfo and counts the CPUs PID 1 may use.
func machineSize(meminfo string) (cgroups.Size, error) {
	b, err := os.ReadFile(meminfo)
	if err != nil {
		return cgroups.Size{}, err
	}
	kb, err := meminfoField(string(b), "MemTotal")
	if err != nil {
		return cgroups.Size{}, fmt.Errorf("%s: %w", meminfo, err)
	}
	return cgroups.Size{Memory: config.Size(kb * 1024), CPUs: runtime.NumCPU()}, nil
}

// StatusServer serves PID 1's control socket (status.Socket): the status
// report and the actions the management service may ask for, for it and
// for hvstatus on the debug console.
type StatusServer struct{ Host *Host }

func (StatusServer) String() string { return "status server" }

// Run listens on the socket, for root and catalog.ControlGID only, and
// serves in the background.
func (s StatusServer) Run() error {
	dir := filepath.Dir(status.Socket)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := restrict(dir, 0o750); err != nil {
		return err
	}
	_ = os.Remove(status.Socket)
	l, err := net.Listen("unix", status.Socket)
	if err != nil {
		return err
	}
	if err := restrict(status.Socket, 0o660); err != nil {
		l.Close()
		return err
	}
	go func() {
		if err := status.Serve(l, s.Host); err != nil {
			s.Host.Logf("status server: %v", err)
		}
	}()
	return nil
}

// restrict gives p to root and catalog.ControlGID with mode.
func restrict(p string, mode os.FileMode) error {
	if err := os.Chown(p, 0, catalog.ControlGID); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// Optional: the host runs without its report, which only observers miss.
func (StatusServer) Optional() bool { return true }

// GateFile keeps the health gate's verdict for the update service, which
// decides on it whether this boot counts as good (boot assessment).
const GateFile = "/run/hardvisor/gate.json"

// HealthGate waits, up to host.readyTimeout, for every required service to
// be ready, and checks that every hardening setting passed. Its verdict is
// kept (Host.Gate, GateFile); a failed gate stops the boot sequence with a
// *NotReadyError naming what failed.
type HealthGate struct{ Host *Host }

func (HealthGate) String() string { return "health gate" }

// NotReadyError is a failed health gate: each failing service with its last
// log lines, each failed hardening check.
type NotReadyError struct{ Failing []string }

func (e *NotReadyError) Error() string { return "not ready: " + strings.Join(e.Failing, "; ") }

// Run waits for the gate.
func (g HealthGate) Run() error {
	h := g.Host
	var failing []string
	if sup := h.Supervisor; sup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.Config.Host.ReadyTimeout.D())
		err := sup.Ready(ctx)
		cancel()
		if err != nil {
			failing = sup.Failing()
			if len(failing) == 0 {
				failing = []string{err.Error()}
			}
		}
	}
	for _, f := range failed(h.Hardening) {
		failing = append(failing, "hardening: "+f)
	}
	h.decide(failing)
	if len(failing) > 0 {
		return &NotReadyError{Failing: failing}
	}
	return nil
}

// decide records the gate's verdict and writes GateFile.
func (h *Host) decide(failing []string) {
	g := status.Gate{Decided: true, Ready: len(failing) == 0, At: time.Now().UTC(), Failing: failing}
	h.mu.Lock()
	h.gate = g
	h.mu.Unlock()
	b, _ := json.Marshal(g)
	if err := os.MkdirAll(filepath.Dir(GateFile), 0o700); err == nil {
		_ = os.WriteFile(GateFile, append(b, '\n'), 0o600)
	}
}

// NotReady reports a boot that did not reach the gate or failed it: the gate
// is recorded as failed and PID 1 prints `hardvisor: not ready` with every
// failing check, then keeps the host up for inspection.
func (h *Host) NotReady(err error) {
	var nr *NotReadyError
	failing := []string{err.Error()}
	if errors.As(err, &nr) {
		failing = nr.Failing
	}
	h.decide(failing)
	h.Logf("not ready version=%s: %d failing", h.Version, len(failing))
	for _, f := range failing {
		h.Logf("  %s", strings.ReplaceAll(f, "\n", "\n  "))
	}
}

// Report is the host's status now.
func (h *Host) Report() status.Report {
	h.mu.Lock()
	r := status.Report{
		At:        time.Now().UTC(),
		Version:   h.Version,
		Boots:     h.DataBoots,
		Gate:      h.gate,
		Hardening: append([]status.Check(nil), h.Hardening...),
		Machine:   h.Machine,
	}
	h.mu.Unlock()
	if h.Config != nil {
		r.Hostname, r.Profile = h.Config.Host.Hostname, h.Config.Profile
	}
	r.InitRSS, _ = selfRSS("/proc/self/status")
	r.Network = h.networkReport()
	if h.Supervisor != nil {
		for _, st := range h.Supervisor.Status() {
			s := status.Service{
				Name: st.Name, State: st.State.String(), Since: st.Since, Pid: st.Pid, Restarts: st.Restarts,
				Reason: st.Reason, Required: st.Required,
				Memory: st.Usage.Memory, PIDs: st.Usage.PIDs, CPU: st.Usage.CPU,
			}
			if st.LastExit != nil {
				s.LastExit = st.LastExit.String()
			}
			if st.Pid > 0 {
				s.UID, s.CapEff, s.RSS = procStatus(st.Pid)
			}
			if !st.Health.OK && !st.Health.Checked.IsZero() {
				s.Health = st.Health.Err
			}
			r.Services = append(r.Services, s)
		}
	}
	return r
}

// procStatus reads what a service's process really runs with, not what
// its spec asked for; nothing for a process that is gone.
func procStatus(pid int) (uid *int, capEff string, rss uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, "", 0
	}
	return parseProcStatus(string(b))
}

// Logs gives a service's last lines, for the control socket.
func (h *Host) Logs(service string, lines int) ([]string, error) {
	if h.Supervisor == nil {
		return nil, fmt.Errorf("logs %q: %w", service, status.ErrUnknownService)
	}
	l, err := h.Supervisor.Logs(service, lines)
	return l, unknownService(err)
}

// Restart restarts a service, for the control socket.
func (h *Host) Restart(service string) error {
	if h.Supervisor == nil {
		return fmt.Errorf("restart %q: %w", service, status.ErrUnknownService)
	}
	return unknownService(h.Supervisor.Restart(service))
}

// unknownService gives the supervisor's unknown-service error the status
// package's meaning.
func unknownService(err error) error {
	if errors.Is(err, supervise.ErrUnknownService) {
		return fmt.Errorf("%w: %w", err, status.ErrUnknownService)
	}
	return err
}

// Power asks PID 1 to go down, as the power button does, for the control socket.
func (h *Host) Power(action string) error {
	var a PowerAction
	switch action {
	case status.PowerReboot:
		a = Reboot
	case status.PowerPoweroff:
		a = PowerOff
	default:
		return fmt.Errorf("power: unknown action %q, want %s or %s", action, status.PowerReboot, status.PowerPoweroff)
	}
	if h.power == nil {
		return errors.New("power: the host is not listening for power requests yet")
	}
	h.Logf("%s requested on the control socket", a)
	select {
	case h.power <- a:
	default: // one is on its way already
	}
	return nil
}

// StopServices stops every service in reverse dependency order, each with
// SIGTERM and then SIGKILL after its stop timeout, within deadline.
func (h *Host) StopServices(deadline time.Duration) {
	if h.Supervisor == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := h.Supervisor.Stop(ctx); err != nil {
		h.Logf("stopping services: %v", err)
	}
}

// selfRSS reads VmRSS, in bytes, from a /proc/<pid>/status file.
func selfRSS(statusFile string) (uint64, error) {
	b, err := os.ReadFile(statusFile)
	if err != nil {
		return 0, err
	}
	kb, err := meminfoField(string(b), "VmRSS")
	return kb * 1024, err
}
