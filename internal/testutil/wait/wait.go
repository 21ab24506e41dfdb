// Package wait is the one polling wait of Conclave's tests: for a
// condition that no event announces (what a browser or another process
// shows, a counter on the server), a test checks it every few
// milliseconds until it holds or a deadline passes, and then fails saying
// what it waited for. Where an event can be awaited (a channel, a fake
// clock's timer), a test awaits it instead.
package wait

import (
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 20 * time.Millisecond

// For waits until cond holds, failing t after timeout with "timed out
// waiting for <what>".
func For(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	Until(t, timeout, cond, func() string { return what })
}

// Until is For with a description made at the timeout, so that it can
// say what was seen instead.
func Until(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, describe())
	}
}

// Within reports whether cond held within timeout, checking it every
// Interval; it is for tests that wait and then say more than Until does.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Interval)
	}
	return true
}
