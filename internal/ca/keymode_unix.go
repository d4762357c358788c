//go:build unix

package ca

import (
	"fmt"
	"io/fs"
	"syscall"
)

// checkKeyMode refuses a CA key that users other than its owner may read,
// as ssh and PostgreSQL refuse theirs. Like PostgreSQL, it lets a key owned
// by root be readable by its group (0640 or 0440, never group-writable):
// that is how Kubernetes mounts a Secret for a non-root container — owned by
// root, group fsGroup, the volume's mode ORed with 0440 — and the only way a
// process that is not root can read a key it was given. Root chose that
// group; a key the process's own user left group-readable is a mistake.
func checkKeyMode(name string, fi fs.FileInfo) error {
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && st.Uid == 0 && perm&0o037 == 0 {
		return nil
	}
	return fmt.Errorf("ca: %s is readable by others (mode %v): chmod 600 it (a key owned by root may be 0640)", name, perm)
}
