package clock_test

import (
	"testing"
	"time"

	"conclave/internal/clock"
	"conclave/internal/testutil/fakeclock"
)

func TestSystem(t *testing.T) {
	var c clock.Clock = clock.System{}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("System is off by %v", d)
	}
	fired := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("System.AfterFunc did not call")
	}
	stop := c.AfterFunc(time.Hour, func() { t.Error("a stopped call ran") })
	if !stop() {
		t.Fatal("stop of a pending call reported false")
	}
	if stop() {
		t.Fatal("a second stop reported true")
	}
}

func TestOr(t *testing.T) {
	if _, ok := clock.Or(nil).(clock.System); !ok {
		t.Fatalf("Or(nil) = %T, want clock.System", clock.Or(nil))
	}
	fc := fakeclock.New(time.Unix(0, 0))
	if clock.Or(fc) != fc {
		t.Fatal("Or(c) is not c")
	}
}

// Every calls on the clock's timers, every d, until stopped.
func TestEvery(t *testing.T) {
	c := fakeclock.New(time.Unix(1_800_000_000, 0))
	start := c.Now()
	var at []time.Duration
	stop := clock.Every(c, time.Second, func() { at = append(at, c.Now().Sub(start)) })
	c.Advance(999 * time.Millisecond)
	if len(at) != 0 {
		t.Fatalf("called at %v, before the first second", at)
	}
	c.Advance(2500 * time.Millisecond)
	if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}; !equal(at, want) {
		t.Fatalf("called at %v, want %v", at, want)
	}
	stop()
	c.Advance(time.Hour)
	if len(at) != 3 {
		t.Fatalf("called %d times after stop, want none", len(at)-3)
	}
	stop() // idempotent
}

// A stop from inside the call ends the ticks.
func TestEveryStopInside(t *testing.T) {
	c := fakeclock.New(time.Unix(1_800_000_000, 0))
	n := 0
	var stop func()
	stop = clock.Every(c, time.Second, func() {
		n++
		stop()
	})
	c.Advance(time.Minute)
	if n != 1 {
		t.Fatalf("called %d times, want 1", n)
	}
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
