// Command vmmd runs the config's guests through libvirtd and serves their
// status and controls on a unix socket (see package vmm). On SIGTERM it
// shuts the guests down by ACPI and exits 0; the service manager stops it
// before libvirtd.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"hardvisor.dev/hardvisor/services/vmm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := vmm.Execute(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vmmd:", err)
		os.Exit(1)
	}
}
