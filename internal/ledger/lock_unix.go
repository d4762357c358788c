//go:build unix

package ledger

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock on name. A second writer
// would fork the chain, so it must fail rather than wait. The lock goes with
// the process, so a crash never leaves a stale lock behind.
//
// fi is the lock file's identity: if the name stops naming it (the
// directory was removed and recreated), the lock no longer keeps a second
// writer out, and the writer must take it again (see Ledger.relocate).
func lockFile(name string) (unlock func() error, fi os.FileInfo, err error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("in use by another writer (%s is locked)", name)
		}
		return nil, nil, fmt.Errorf("lock %s: %w", name, err)
	}
	fi, err = f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f.Close, fi, nil // closing the descriptor releases the lock
}
