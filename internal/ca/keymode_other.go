//go:build !unix

package ca

import (
	"fmt"
	"io/fs"
)

// checkKeyMode refuses a CA key with permission bits for others than its
// owner (see keymode_unix.go; elsewhere there is no owner to consult).
func checkKeyMode(name string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("ca: %s is readable by others (mode %v): chmod 600 it", name, perm)
	}
	return nil
}
