package boot

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

type fakeStep struct {
	name     string
	err      error
	optional bool
	ran      *[]string
}

func (f fakeStep) Run() error     { *f.ran = append(*f.ran, f.name); return f.err }
func (f fakeStep) String() string { return f.name }
func (f fakeStep) Optional() bool { return f.optional }

func TestRunStopsAtMandatoryFailure(t *testing.T) {
	var ran []string
	var out bytes.Buffer
	h := &Host{Console: &out}
	boom := errors.New("boom")
	steps := []Step{
		fakeStep{name: "a", ran: &ran},
		fakeStep{name: "b", err: errors.New("no such device"), optional: true, ran: &ran},
		fakeStep{name: "c", err: boom, ran: &ran},
		fakeStep{name: "d", ran: &ran},
	}
	err := Run(h, steps, time.Now)
	var fe *FailedError
	if !errors.As(err, &fe) || fe.Step != "c" || !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want FailedError for step c wrapping boom", err)
	}
	if got, want := ran, []string{"a", "b", "c"}; !equal(got, want) {
		t.Errorf("ran %v, want %v", got, want)
	}
	if got, want := out.String(), "hardvisor: step b: no such device (optional, continuing)\n"; got != want {
		t.Errorf("console = %q, want %q", got, want)
	}
}

func TestRunReportsSlowSteps(t *testing.T) {
	var ran []string
	var out bytes.Buffer
	clock := time.Unix(0, 0)
	now := func() time.Time { clock = clock.Add(1500 * time.Millisecond); return clock }
	if err := Run(&Host{Console: &out}, []Step{fakeStep{name: "slow", ran: &ran}}, now); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "hardvisor: step slow took 1.5s\n"; got != want {
		t.Errorf("console = %q, want %q", got, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
