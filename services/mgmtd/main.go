// Command mgmtd is the management API: HTTPS with mutual TLS 1.3 on the
// management address (it runs in the management network namespace), roles
// from the client certificates, every change and every denial in the audit
// log. It acts on the host through PID 1's control socket, and on the
// guests through vmm's socket when --vmm names it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"hardvisor.dev/hardvisor/services/mgmt/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := api.Execute(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mgmtd:", err)
		os.Exit(1)
	}
}
