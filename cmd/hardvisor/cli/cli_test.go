package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/config"
)

func execute(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = Execute(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, config.Default(), 0o644)
	out, _, err := execute(t, "validate", good)
	if err != nil {
		t.Fatalf("validate default config: %v", err)
	}
	if want := good + ": valid (version 0.1.0, profile production)\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: hardvisor.dev/v1\nversion: 1.x\nprofile: fast\nhost: {hostnam: x}\n"), 0o644)
	_, stderr, err := execute(t, "validate", bad)
	if err == nil || ExitCode(err) != 1 {
		t.Fatalf("validate bad config: err=%v, want exit code 1", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 problems, one a line, got:\n%s", stderr)
	}
	for i, prefix := range []string{bad + ":2: version:", bad + ":3: profile:", bad + ":4: host:"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
	if !strings.Contains(err.Error(), "3 problem(s)") {
		t.Errorf("error %q should count the problems", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"validate"}, {"build", "--no-such-flag"}, {"build", "--compression", "lz4"}, {"build", "extra"}} {
		_, _, err := execute(t, args...)
		if err == nil || ExitCode(err) != 2 {
			t.Errorf("hardvisor %v: err=%v, want a usage error (exit 2)", args, err)
		}
	}
}

func TestConfigPrintsDefault(t *testing.T) {
	out, _, err := execute(t, "config")
	if err != nil || out != string(config.Default()) {
		t.Errorf("hardvisor config: err=%v, output differs from the embedded default", err)
	}
}
