//go:build !linux

package bench

import "os/exec"

// setDeathSignal is Linux-only; elsewhere the harness's own cleanup kills children.
func setDeathSignal(*exec.Cmd) {}
