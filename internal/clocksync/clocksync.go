// Package clocksync reads whether the system clock is synchronised (by
// NTP, chrony, systemd-timesyncd or PTP): the kernel's view from
// adjtimex(2), read without changing anything. Conclave shows it on the
// admin page and raises an alarm when the clock is not synchronised,
// because audit times, certificate checks and TOTP-like rules rely on it.
package clocksync

import (
	"fmt"
	"time"
)

// State is the kernel's clock discipline state.
type State struct {
	// Synced is false when the kernel marks the clock unsynchronised
	// (STA_UNSYNC, or adjtimex returning TIME_ERROR).
	Synced bool `json:"synced"`
	// MaxError and EstError are the kernel's maximum and estimated error.
	MaxError time.Duration `json:"maxError"`
	EstError time.Duration `json:"estError"`
	// Offset is the last offset applied by the time daemon.
	Offset time.Duration `json:"offset"`
	// Status is the kernel's clock state: "ok", "insert-leap",
	// "delete-leap", "leap-in-progress", "leap-done" or "error".
	Status string `json:"status"`
	// Error is set when the state could not be read.
	Error string `json:"error,omitempty"`
}

// Summary is a sentence for the admin page and the alarm.
func (s State) Summary() string {
	if s.Error != "" {
		return "The clock's synchronisation state cannot be read: " + s.Error
	}
	if !s.Synced {
		return fmt.Sprintf("The system clock is not synchronised (kernel state %s, maximum error %s): run an NTP client (chrony, systemd-timesyncd) so that audit times and certificate checks are right.", s.Status, s.MaxError)
	}
	return fmt.Sprintf("The system clock is synchronised (estimated error %s, maximum %s).", s.EstError, s.MaxError)
}

// Reader reads the state; System reads the kernel's.
type Reader func() State
