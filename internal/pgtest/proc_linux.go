package pgtest

import "syscall"

// sysProcAttr runs a PostgreSQL process as cred (nil: as this process) and
// kills it when the test process dies, so that no server outlives its test.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
