// Command floorinit is the trivial PID 1 that measures the boot-time floor
// of a machine: booted as /init of an initramfs holding nothing else, it
// writes "floor: ready" to the console and powers the machine off. The
// time QEMU takes to show that line is the least any hardvisor image can
// take on the same kernel and machine. qemu.BuildFloorInitramfs packs it.
package main

import (
	"fmt"
	"os"
	"time"
)

// Marker is the line floorinit writes to the console.
const Marker = "floor: ready"

func main() {
	if err := run(); err != nil {
		// PID 1 must not exit (the kernel would panic and hide the
		// message): report and stay.
		fmt.Fprintf(os.Stderr, "floorinit: %v\n", err)
		for {
			time.Sleep(time.Hour)
		}
	}
}
