package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/services/mgmt/audit"
)

// auditLog writes a three-record audit log and returns its path and head.
func auditLog(t *testing.T) (path, head string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, target := range []string{"libvirtd", "vmm", "updated"} {
		if _, err := l.Append(audit.Record{Actor: "alice", Role: "admin", Method: "POST", Action: "services.restart", Target: target, Allowed: true, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	_, head = l.Head()
	return path, head
}

func runAuditCmd(args ...string) (stdout string, err error) {
	var o, e bytes.Buffer
	err = runAudit(args, &o, &e)
	return o.String(), err
}

func TestAuditVerify(t *testing.T) {
	path, head := auditLog(t)
	out, err := runAuditCmd("verify", path)
	if want := path + ": 3 records, chain intact, head " + head + "\n"; err != nil || out != want {
		t.Errorf("audit verify: %q, %v; want %q", out, err, want)
	}
	out, err = runAuditCmd("verify", path, "--head-seq", "3", "--head", head)
	if want := path + ": 3 records, chain intact, head " + head + " (expected head at seq 3 matches)\n"; err != nil || out != want {
		t.Errorf("audit verify with the head: %q, %v; want %q", out, err, want)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	edited := strings.Replace(string(b), `"target":"vmm"`, `"target":"vmx"`, 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runAuditCmd("verify", path)
	if want := path + ": line 2 (seq 2): hash does not match its content: the record was edited"; err == nil || err.Error() != want || ExitCode(err) != 1 {
		t.Errorf("audit verify of an edited log: %v (exit %d), want %q (exit 1)", err, ExitCode(err), want)
	}

	// Without its newest record the chain is intact: only the head shows it.
	if err := os.WriteFile(path, []byte(lines[0]+lines[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runAuditCmd("verify", path); err != nil {
		t.Errorf("audit verify of a log without its newest record: %v", err)
	}
	_, err = runAuditCmd("verify", "--head-seq=3", "--head="+head, path)
	if want := path + ": the log ends at seq 2, before the expected head at seq 3: the newest record was removed"; err == nil || err.Error() != want || ExitCode(err) != 1 {
		t.Errorf("audit verify --head-seq 3: %v (exit %d), want %q (exit 1)", err, ExitCode(err), want)
	}
}

func TestAuditUsage(t *testing.T) {
	path, head := auditLog(t)
	for _, args := range [][]string{
		{},
		{"check", path},
		{"verify"},
		{"verify", path, path},
		{"verify", path, "--head-seq", "3"},
		{"verify", path, "--head", head},
		{"verify", path, "--head-seq", "3", "--head", strings.ToUpper(head)},
		{"verify", path, "--head-seq", "-1", "--head", head},
		{"verify", path, "--no-such-flag"},
	} {
		if _, err := runAuditCmd(args...); err == nil || ExitCode(err) != 2 {
			t.Errorf("hardvisor audit %q: %v, want a usage error (exit 2)", args, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "none.log")
	if _, err := runAuditCmd("verify", missing); err == nil || ExitCode(err) != 1 || !strings.Contains(err.Error(), missing) {
		t.Errorf("audit verify of a missing file: %v, want an error naming it (exit 1)", err)
	}
}
