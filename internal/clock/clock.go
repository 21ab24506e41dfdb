// Package clock is Conclave's one source of time for rules that depend on
// it: expiries, debounces, waits, throttles. Production code takes a Clock
// and uses System; tests give it internal/testutil/fakeclock, which moves
// only when the test says so, and never check what kind of clock they were
// given.
//
// What measures real time rather than applying a rule (the media path's
// packet timestamps, compared with the kernel's receive timestamps; a
// benchmark's elapsed time) reads time.Now directly.
package clock

import "time"

// Clock tells the time and schedules calls.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f on a goroutine of its own once d has passed,
	// unless the returned stop function is called first; stop reports
	// whether it prevented the call.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// System is the machine's clock. Its zero value is ready to use.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (System) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Or returns c, or System when c is nil: the default of an optional
// Clock field.
func Or(c Clock) Clock {
	if c == nil {
		return System{}
	}
	return c
}

// Every calls f every d, on the clock's timers, until stop is called.
// Calls do not overlap: the next is scheduled when one returns. It
// returns at once.
func Every(c Clock, d time.Duration, f func()) (stop func()) {
	t := &ticker{c: c, d: d, f: f}
	t.mu.Lock()
	t.arm()
	t.mu.Unlock()
	return t.halt
}
