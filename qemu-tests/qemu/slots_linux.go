package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// slot is a held machine-wide VM slot: an flock on one of
// $TMPDIR/hardvisor-vm-slots/<i>.lock. The kernel drops the lock if the
// process dies, so a crashed test never leaks a slot.
type slot struct{ f *os.File }

// acquireSlot blocks until a VM slot is free or ctx is done. waiting is
// called once if no slot was free at first.
func acquireSlot(ctx context.Context, waiting func(limit int)) (*slot, error) {
	limit := DefaultMaxVMs
	if s := os.Getenv(MaxVMsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want a positive number", MaxVMsEnv, s)
		}
		limit = n
	}
	dir := filepath.Join(os.TempDir(), "hardvisor-vm-slots")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("VM slots: %w", err)
	}
	for first := true; ; first = false {
		for i := range limit {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d.lock", i)), os.O_RDWR|os.O_CREATE, 0o666)
			if err != nil {
				return nil, fmt.Errorf("VM slots: %w", err)
			}
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return &slot{f}, nil
			}
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("VM slots: lock %s: %w", f.Name(), err)
			}
		}
		if first && waiting != nil {
			waiting(limit)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for one of %d VM slots (%s): %w", limit, MaxVMsEnv, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *slot) release() {
	if s != nil {
		s.f.Close()
	}
}
