package qemutests

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/init/boot"
)

// TestHardeningReadsBack boots the debug image and reads every hardening
// sysctl, the lockdown mode and module loading back from the running kernel
// through the serial shell.
func TestHardeningReadsBack(t *testing.T) {
	dir := outDir(t, "HARDVISOR_OUT_DEBUG")
	m := readManifest(t, dir)
	vm := directBoot(t, dir, nil)
	ready := expect(t, vm, readyLine(m.Version), bootTimeout)
	if h := regexp.MustCompile(`hardening=(\d+)/(\d+)`).FindStringSubmatch(ready[0]); h == nil || h[1] != h[2] {
		t.Errorf("ready line %q does not report every hardening check passed", ready[0])
	}
	// The module files are freed once the host is ready.
	expect(t, vm, regexp.MustCompile(`hardvisor: modules: loading disabled; freed [1-9]\d* MB of module files in /usr/lib/modules`), bootTimeout)
	expect(t, vm, regexp.MustCompile(`hardvisor: debug shell on`), bootTimeout)

	var want []string
	var files []string
	for _, s := range append(boot.HardeningSysctls, boot.Sysctl{Key: "kernel.modules_disabled", Value: "1"}) {
		if s.IfPresent {
			continue // not in every kernel; PID 1 reports it as not applicable
		}
		files = append(files, s.Path())
		want = append(want, fmt.Sprintf("%s=%s", s.Path(), s.Value))
	}
	// One command prints every file as path=value, then an end marker the
	// typed command line cannot contain literally.
	cmd := "for f in " + strings.Join(files, " ") + "; do echo \"$f=$(cat $f)\"; done; echo sysctl-$((1+1))-end\n"
	if err := vm.Send(cmd); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		expect(t, vm, regexp.MustCompile(`(^|\$ )`+regexp.QuoteMeta(w)+`$`), bootTimeout)
	}
	expect(t, vm, regexp.MustCompile(`sysctl-2-end$`), bootTimeout)

	if err := vm.Send("cat /sys/kernel/security/lockdown\n"); err != nil {
		t.Fatal(err)
	}
	expect(t, vm, regexp.MustCompile(`\[integrity\]`), bootTimeout)

	// With loading off, the module files were freed from the root file
	// system (see the boot log above), and transparent huge pages are only
	// for who asks.
	if err := vm.Send("ls /usr/lib/modules; cat /sys/kernel/mm/transparent_hugepage/enabled\n"); err != nil {
		t.Fatal(err)
	}
	expect(t, vm, regexp.MustCompile(`/usr/lib/modules: no such file or directory`), bootTimeout)
	// (The kernel turns them off entirely below 512 MiB of RAM.)
	expect(t, vm, regexp.MustCompile(`^always (\[madvise\] never|madvise \[never\])$`), bootTimeout)
}
