//go:build !linux

package clocksync

// System reports that the state cannot be read on this system.
func System() State { return State{Error: "adjtimex(2) exists only on Linux"} }
