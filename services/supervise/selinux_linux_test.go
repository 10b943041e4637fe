package supervise

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

// selinuxEnforce is present when the kernel runs SELinux.
const selinuxEnforce = "/sys/fs/selinux/enforce"

func hasSELinux() bool {
	_, err := os.Stat(selinuxEnforce)
	return !errors.Is(err, fs.ErrNotExist)
}

// TestSELinuxLabel starts a service in the supervisor's own context (a
// transition every policy allows) and reads the label back.
func TestSELinuxLabel(t *testing.T) {
	if !hasSELinux() {
		t.Skip("the kernel runs without SELinux")
	}
	b, err := os.ReadFile("/proc/self/attr/current")
	if err != nil {
		t.Fatal(err)
	}
	label := strings.TrimRight(string(b), "\x00\n")
	sup, rec := realRun(t, []Spec{{
		Name: "labeled", Command: []string{"/bin/cat", "/proc/self/attr/current"},
		SELinuxLabel: label, Restart: Never,
	}}, nil)
	rec.until(t, sup, "labeled", StateExited)
	var lines []string
	for deadline := time.Now().Add(wait); len(lines) == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		lines, _ = sup.Logs("labeled", 0)
	}
	if got := strings.TrimRight(strings.Join(lines, ""), "\x00"); got != label {
		t.Errorf("service runs in %q, want %q", got, label)
	}
}

// TestSELinuxLabelWithoutSELinux: a label the kernel cannot apply stops the
// start; it never runs the service in the supervisor's context instead.
func TestSELinuxLabelWithoutSELinux(t *testing.T) {
	if hasSELinux() {
		t.Skip("the kernel runs SELinux")
	}
	marker := t.TempDir() + "/ran"
	sup, rec := realRun(t, []Spec{{
		Name: "labeled", Command: []string{"/bin/sh", "-c", "touch " + marker},
		SELinuxLabel: "system_u:system_r:hv_mgmt_t:s0", Restart: Never,
	}}, nil)
	rec.until(t, sup, "labeled", StateExited)
	st := status(t, sup, "labeled")
	if st.LastExit == nil || !strings.Contains(st.LastExit.Reason, "set SELinux exec label system_u:system_r:hv_mgmt_t:s0: ") {
		t.Errorf("last exit %+v, want a refused start", st.LastExit)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the service ran without its label")
	}
}

func TestValidateSELinuxLabel(t *testing.T) {
	for label, ok := range map[string]bool{
		"":                                   true,
		"system_u:system_r:hv_mgmt_t:s0":     true,
		"system_u:system_r:svirt_t:s0:c1,c2": true,
		"system_u:system_r:hv_mgmt_t":        false,
		"system_u::hv_mgmt_t:s0":             false,
		"hv_mgmt_t":                          false,
		"system_u:system_r:hv mgmt:s0":       false,
	} {
		err := Validate([]Spec{{Name: "s", Command: []string{"/bin/true"}, SELinuxLabel: label}})
		if (err == nil) != ok {
			t.Errorf("Validate(label %q) = %v, want ok=%v", label, err, ok)
		}
		if !ok && err != nil && err.Error() != `service "s": SELinux label "`+label+`": want user:role:type:level` {
			t.Errorf("Validate(label %q) = %v", label, err)
		}
	}
}
