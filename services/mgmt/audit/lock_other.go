//go:build !linux

package audit

import "os"

// lockFile does nothing here: the appliance is Linux, where the log is
// locked (lock_linux.go); elsewhere the package only serves tools such as
// Verify.
func lockFile(*os.File) error { return nil }
