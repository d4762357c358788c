//go:build !linux

package pgtest

import "syscall"

// sysProcAttr: only Linux can tie the server's life to the test's.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
