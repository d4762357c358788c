package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the child if the harness dies, so no
// server outlives a crashed or killed run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
