// Command hvstatus prints the host's status report on the console: the
// health gate, every service with its state, restarts, last exit and cgroup
// usage, and the hardening that did not pass. It reads PID 1's status
// socket; -json prints the report as PID 1 serves it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"hardvisor.dev/hardvisor/services/status"
)

func main() {
	asJSON := flag.Bool("json", false, "print the report as JSON")
	sock := flag.String("socket", status.Socket, "PID 1's status socket")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := status.Fetch(ctx, *sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hvstatus:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = r.WriteText(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hvstatus:", err)
		os.Exit(1)
	}
}
