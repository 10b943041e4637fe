package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hardvisor.dev/hardvisor/config"
)

func TestFitMemory(t *testing.T) {
	const mi = config.Mi
	for _, tc := range []struct {
		want, held, budget config.Size
		err                string
	}{
		{200 * mi, 0, 512 * mi, ""},
		{200 * mi, 312 * mi, 512 * mi, ""}, // exactly full
		{200 * mi, 0, -1, ""},              // machine/ without a ceiling
		{200 * mi, 400 * mi, -1, ""},
		{192 * mi, 400 * mi, 512 * mi, "guest g does not fit in the host's memory budget: its ceiling is 192Mi, running guests hold 400Mi of the 512Mi that machine/ allows"},
		{600 * mi, 0, 512 * mi, "guest g does not fit in the host's memory budget: its ceiling is 600Mi, running guests hold 0 of the 512Mi that machine/ allows"},
		{700 * mi, 400 * mi, 973756 * config.Ki, "guest g does not fit in the host's memory budget: its ceiling is 700Mi, running guests hold 400Mi of the 950.9Mi that machine/ allows"},
	} {
		err := FitMemory("g", tc.want, tc.held, tc.budget)
		if got := errText(err); got != tc.err || err != nil && !errors.Is(err, ErrNoBudget) {
			t.Errorf("FitMemory(%s, held %s, budget %s) = %q, want %q", tc.want, tc.held, tc.budget, got, tc.err)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestMachineBudget(t *testing.T) {
	mount := t.TempDir()
	if err := os.Mkdir(filepath.Join(mount, "machine"), 0o755); err != nil {
		t.Fatal(err)
	}
	for content, want := range map[string]config.Size{"max\n": -1, "536870912\n": 512 * config.Mi} {
		if err := os.WriteFile(filepath.Join(mount, "machine", "memory.max"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := machineBudget(mount); err != nil || got != want {
			t.Errorf("machineBudget with %q = %d, %v; want %d", content, got, err, want)
		}
	}
	os.WriteFile(filepath.Join(mount, "machine", "memory.max"), []byte("lots\n"), 0o644)
	if _, err := machineBudget(mount); err == nil {
		t.Error("machineBudget took memory.max \"lots\"")
	}
	if _, err := machineBudget(t.TempDir()); err == nil {
		t.Error("machineBudget without machine/ gave no error")
	}
}

// TestReserveCountsRunningAndStarting checks the manager's bookkeeping: a
// guest that is running or between its check and running holds its
// ceiling; a stopped one does not.
func TestReserveCountsRunningAndStarting(t *testing.T) {
	mount := t.TempDir()
	os.Mkdir(filepath.Join(mount, "machine"), 0o755)
	if err := os.WriteFile(filepath.Join(mount, "machine", "memory.max"), []byte("629145600\n"), 0o644); err != nil { // 600Mi
		t.Fatal(err)
	}
	spec := func(name string) config.GuestSpec {
		return config.GuestSpec{Name: name, Memory: 16 * config.Mi, Limits: config.Limits{Memory: 200 * config.Mi}}
	}
	m := &Manager{opts: Options{Cgroup: mount}}
	for _, n := range []string{"a", "b", "c", "d"} {
		m.guests = append(m.guests, &guest{g: Guest{Spec: spec(n)}})
	}
	a, b, c, d := m.guests[0], m.guests[1], m.guests[2], m.guests[3]
	a.st.State = "running"
	d.st.State = "shutoff"
	if err := m.reserve(b); err != nil {
		t.Fatalf("b (200Mi beside a's 200Mi of 600Mi): %v", err)
	}
	if !b.starting {
		t.Fatal("b is not counted as starting")
	}
	if err := m.reserve(c); err != nil {
		t.Fatalf("c (200Mi beside 400Mi of 600Mi): %v", err)
	}
	if err := m.reserve(d); err == nil {
		t.Fatal("d fit with a running and b, c starting (800Mi of 600Mi)")
	}
	m.release(c)
	if err := m.reserve(d); err != nil {
		t.Fatalf("d after c's start ended: %v", err)
	}
}
