//go:build !linux

package loadtest

import "os/exec"

// setDeathSignal does nothing where the kernel cannot stop a child with
// its parent.
func setDeathSignal(*exec.Cmd) {}
