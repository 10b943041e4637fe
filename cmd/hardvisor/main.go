// Command hardvisor builds hardvisor boot images and operates hardvisor hosts.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"hardvisor.dev/hardvisor/cmd/hardvisor/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hardvisor: %v\n", err)
		os.Exit(cli.ExitCode(err))
	}
}
