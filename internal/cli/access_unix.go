//go:build unix

package cli

import "golang.org/x/sys/unix"

// canWrite asks the kernel whether this process may write path (and, for a
// directory, create files in it), without creating anything.
func canWrite(path string, dir bool) error {
	mode := uint32(unix.W_OK)
	if dir {
		mode |= unix.X_OK
	}
	return unix.Access(path, mode)
}
