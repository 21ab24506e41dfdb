package loadtest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal stops the server if the load tester dies first.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
