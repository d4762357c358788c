//go:build !unix

package ledger

import "os"

// lockFile is a no-op where flock is not available; one writer per ledger is
// then the deployment's job.
func lockFile(string) (func() error, os.FileInfo, error) {
	return func() error { return nil }, nil, nil
}
