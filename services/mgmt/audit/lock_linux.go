package audit

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on f, so that a second Log (a second
// mgmtd, or a mistake in this one) cannot interleave its records with ours.
// The lock goes with the file's close.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errors.New("in use: another process (or another Open in this one) has it open")
	}
	if err != nil {
		return fmt.Errorf("flock: %w", err)
	}
	return nil
}
