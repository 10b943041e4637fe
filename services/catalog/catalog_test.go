package catalog

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/cgroups"
	"hardvisor.dev/hardvisor/services/supervise"
)

func parse(t *testing.T, services string) *config.Config {
	t.Helper()
	c, err := config.Parse("hv.yaml", []byte("apiVersion: hardvisor.dev/v1\nversion: 1.0.0\n"+services))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSpecs(t *testing.T) {
	c := parse(t, `services:
  - name: db
    command: [/usr/bin/db, --data, /var/lib/hardvisor/db]
    env: [DB_MODE=fast]
    needsData: true
    ready: {tcp: 5432, interval: 250ms}
    health: {exec: [/usr/bin/db-check], interval: 30s, timeout: 2s, failures: 5}
    user: "1000:1001"
    capabilities: [net_bind_service]
    limits: {memoryMin: 64Mi, memoryMax: 256Mi, cpuWeight: 300, pids: 64}
    backoff: {initial: 1s, max: 20s, resetAfter: 1m}
    breaker: {restarts: 3, window: 5m}
    stopTimeout: 20s
  - name: job
    command: [/usr/bin/job]
    requires: [db]
    after: [db]
    restart: on-failure
    optional: true
`)
	got, err := Specs(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []supervise.Spec{{
		Name:            "db",
		Command:         []string{"/usr/bin/db", "--data", "/var/lib/hardvisor/db"},
		Env:             []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin", "HOME=/", "DB_MODE=fast"},
		Dir:             "/",
		Conditions:      []supervise.Condition{supervise.Mounted{Path: "/var/lib/hardvisor"}},
		Ready:           &supervise.Probe{Check: supervise.TCPListen{Port: 5432}, Interval: 250 * time.Millisecond},
		Health:          &supervise.Probe{Check: supervise.Exec{Command: []string{"/usr/bin/db-check"}}, Interval: 30 * time.Second, Timeout: 2 * time.Second, FailureThreshold: 5},
		Restart:         supervise.Always,
		Backoff:         supervise.Backoff{Initial: time.Second, Max: 20 * time.Second, ResetAfter: time.Minute},
		Breaker:         supervise.Breaker{MaxRestarts: 3, Window: 5 * time.Minute},
		User:            &supervise.User{UID: 1000, GID: 1001},
		Capabilities:    []string{"net_bind_service"},
		NoNewPrivileges: true,
		Cgroup:          cgroups.Limits{MemoryMin: 64 * config.Mi, MemoryMax: 256 * config.Mi, CPUWeight: 300, PIDsMax: 64},
		StopTimeout:     20 * time.Second,
		Required:        true,
	}, {
		Name:            "job",
		Command:         []string{"/usr/bin/job"},
		Env:             []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin", "HOME=/"},
		Dir:             "/",
		Requires:        []string{"db"},
		After:           []string{"db"},
		Restart:         supervise.OnFailure,
		NoNewPrivileges: true,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Specs =\n%#v\nwant\n%#v", got, want)
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name, services, want string
	}{
		{"cycle", `services:
  - {name: a, command: [/a], requires: [b]}
  - {name: b, command: [/b], after: [c]}
  - {name: c, command: [/c], requires: [a]}
`, "services: dependency cycle: a -> b -> c -> a"},
		{"unknown capability", `services:
  - {name: a, command: [/a], capabilities: [cap_fly]}
`, `services: service "a": unknown capability "cap_fly"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(parse(t, tt.services))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if specs, err := Check(parse(t, "services:\n  - {name: a, command: [/a]}\n  - {name: b, command: [/b], requires: [a]}\n")); err != nil || len(specs) != 2 {
		t.Errorf("Check of a good list = %d specs, %v", len(specs), err)
	}
}

// TestBuiltinMgmtd: the API turned on gives mgmtd in the management
// namespace, unprivileged, owning its audit directory; a port below 1024
// keeps it exactly CAP_NET_BIND_SERVICE.
func TestBuiltinMgmtd(t *testing.T) {
	api := func(port int) string {
		return "management:\n  api: {port: " + strconv.Itoa(port) + ", clientCA: ca.pem, serverCert: s.pem, serverKey: s-key.pem}\n"
	}
	if got := Builtin(parse(t, "")); len(got) != 0 {
		t.Errorf("no API configured: built-in services %v", got)
	}
	for _, tc := range []struct {
		port int
		caps []string
	}{{8443, []string{}}, {443, []string{"CAP_NET_BIND_SERVICE"}}} {
		got := Builtin(parse(t, api(tc.port)))
		want := []supervise.Spec{{
			Name:            "mgmtd",
			Command:         []string{Mgmtd, "--port", strconv.Itoa(tc.port), "--pki", PKIDir},
			Env:             Env,
			Dir:             "/",
			NetNS:           "/run/netns/mgmt",
			User:            &supervise.User{UID: 900, GID: 900, Groups: []uint32{901}},
			Capabilities:    tc.caps,
			StateDirs:       []string{"/var/lib/hardvisor/audit"},
			NoNewPrivileges: true,
			SELinuxLabel:    "system_u:system_r:hv_mgmt_t:s0",
			Required:        true,
			Ready:           &supervise.Probe{Check: supervise.TCPListen{Port: tc.port}},
			Cgroup:          cgroups.Limits{MemoryMin: 32 << 20, MemoryMax: 128 << 20, PIDsMax: 256},
		}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("port %d:\n got %+v\nwant %+v", tc.port, got, want)
		}
	}
}
