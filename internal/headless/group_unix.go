//go:build unix

package headless

import (
	"os/exec"
	"syscall"
)

// ownGroup starts Chromium in a process group of its own, so that a timeout or the end of a run
// kills its helper processes too, not only the one exec started.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
