package build

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/rootfs"
	"hardvisor.dev/hardvisor/init/boot"
)

// TestServicePrograms: a service's program comes from the image when the
// image has it, else from the build host; one that is on neither, or not
// executable, is refused with its field.
func TestServicePrograms(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "notexec")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	if err := tree.AddData("bbin/sleep", []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	parse := func(services string) *config.Config {
		t.Helper()
		c, err := config.Parse("hv.yaml", []byte("apiVersion: hardvisor.dev/v1\nversion: 1.0.0\nservices:\n"+services))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	got, err := servicePrograms(parse(`  - {name: a, command: [/bin/sh, -c, "exit 0"], ready: {exec: [/bbin/sleep, "1"]}}
  - {name: b, command: [/bbin/sleep, "9"], health: {exec: [/bin/true]}}
  - {name: c, command: [/bin/sh]}
`), tree)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/sh", "/bin/true"}; !slices.Equal(got, want) {
		t.Errorf("servicePrograms = %q, want %q", got, want)
	}
	cases := []struct{ services, want string }{
		{"  - {name: a, command: [/bin/sh]}\n  - {name: b, command: [/opt/missing/agent]}\n",
			"services[1].command[0]: /opt/missing/agent is not in the image and not on the build host"},
		{"  - {name: a, command: [/bin/sh], health: {exec: [/opt/missing/check]}}\n",
			"services[0].health.exec[0]: /opt/missing/check is not in the image and not on the build host"},
		{"  - {name: a, command: [" + script + "]}\n",
			"services[0].command[0]: " + script + " on the build host is not an executable file"},
		{"  - {name: a, command: [/usr]}\n",
			"services[0].command[0]: /usr on the build host is not an executable file"},
	}
	// A program under a directory the host mounts over would be hidden.
	if strings.HasPrefix(dir, "/tmp/") {
		prog := filepath.Join(dir, "agent")
		if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ services, want string }{"  - {name: a, command: [" + prog + "]}\n",
			"services[0].command[0]: " + prog + " is under /tmp, which the host mounts over at boot: install the program elsewhere"})
	}
	for _, tt := range cases {
		_, err := servicePrograms(parse(tt.services), tree)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("servicePrograms(%q) = %v, want %q", tt.services, err, tt.want)
		}
	}
}

// TestHostMounts: the builder's list of hidden directories is PID 1's own.
func TestHostMounts(t *testing.T) {
	want := []string{config.DataDir}
	for _, m := range boot.EarlyMounts {
		if !slices.ContainsFunc(want, func(w string) bool { return m.Target == w || strings.HasPrefix(m.Target, w+"/") }) {
			want = append(want, m.Target)
		}
	}
	for _, m := range want {
		if coveredBy(m) == "" {
			t.Errorf("PID 1 mounts %s, and the builder does not know it", m)
		}
	}
	for _, m := range hostMounts {
		if !slices.Contains(want, m) {
			t.Errorf("the builder thinks the host mounts %s, and PID 1 does not", m)
		}
	}
}
