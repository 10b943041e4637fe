// Command hvinit is hardvisor's PID 1: it reaps every orphan, runs the boot
// sequence, reports readiness on the console and waits to be asked to power
// off or reboot.
package main

import (
	"os"
	"time"

	"hardvisor.dev/hardvisor/init/boot"
	"hardvisor.dev/hardvisor/init/reaper"
)

func main() {
	r := reaper.Start()
	h := &boot.Host{Console: os.Stdout, Started: time.Now()}
	if err := boot.Run(h, boot.Sequence(h, r), time.Now); err != nil {
		h.NotReady(err)
	}
	if h.Config != nil && h.Config.Profile == "debug" {
		go func() {
			sh := boot.DebugShell{Host: h, Shell: []string{"/bbin/gosh"}, Console: "/dev/" + h.Config.Host.Console, Spawner: r}
			if err := sh.Serve(); err != nil {
				h.Logf("debug shell: %v", err)
			}
		}()
	}
	boot.Shutdown(h, boot.WaitForPowerAction(h))
}
