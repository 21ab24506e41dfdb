// Package fakeclock is a clock for tests that moves only when the test
// advances it: time-based rules (debounces, waits, expiries) are then
// tested at their exact deadlines, without sleeping. It implements
// internal/clock.Clock, which production code takes.
package fakeclock

import (
	"slices"
	"sync"
	"time"

	"conclave/internal/clock"
)

var _ clock.Clock = (*Clock)(nil)

// Clock is a fake clock. Its methods are safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
	armed  chan<- time.Duration
	step   time.Duration
}

type timer struct {
	at      time.Time
	f       func()
	stopped bool
}

// New returns a clock that reads start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// Step makes every later reading first move the clock on by d, without
// running timers, so that each event a test records gets a time of its
// own; 0 (the default) stops it.
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	c.step = d
	c.mu.Unlock()
}

// AfterFunc arranges for f to run, inside Advance, once the clock reaches
// d from now, unless the returned stop function is called first (it
// reports whether it stopped the call).
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	if c.armed != nil {
		c.armed <- d
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// NotifyArmed sends the duration of every timer armed from now on to ch
// (nil stops it), so that a test can await a goroutine's starting to wait.
// A send blocks the arming goroutine until ch takes it.
func (c *Clock) NotifyArmed(ch chan<- time.Duration) {
	c.mu.Lock()
	c.armed = ch
	c.mu.Unlock()
}

// Advance moves the clock on by d, running the timers due on the way in
// the order of their deadlines (in the order armed for equal ones), each
// with the clock at its deadline, outside the clock's lock, on the
// caller's goroutine.
func (c *Clock) Advance(d time.Duration) { c.run(d, true) }

// Jump moves the clock on by d at once, as a machine waking from sleep
// sees it: the clock reads its end first, then every timer due by then
// runs once, in the order of their deadlines, on the caller's goroutine.
// A periodic timer re-armed by its function is due after the end, so it
// does not run again: a jump of days costs one tick, not one per period
// as with Advance. Rules that must see the time pass in steps use Advance.
func (c *Clock) Jump(d time.Duration) { c.run(d, false) }

// run moves the clock on by d, running the timers due by its end in the
// order of their deadlines, outside the clock's lock. Stepwise, the clock
// reads each timer's deadline as it runs (Advance); otherwise it reads the
// end from the start (Jump).
func (c *Clock) run(d time.Duration, stepwise bool) {
	c.mu.Lock()
	end := c.now.Add(d)
	if !stepwise {
		c.now = end
	}
	for {
		next := -1
		for i, t := range c.timers {
			if !t.stopped && !t.at.After(end) && (next < 0 || t.at.Before(c.timers[next].at)) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		t := c.timers[next]
		c.timers = append(c.timers[:next], c.timers[next+1:]...)
		t.stopped = true
		if stepwise {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// Set moves the clock to t. Forward, it is Advance (timers due on the way
// run); backward, only the reading changes: timers keep their deadlines.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	d := t.Sub(c.now)
	if d < 0 {
		c.now = t
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.Advance(d)
}

// Pending returns the deadlines of the timers armed and neither fired nor
// stopped, soonest first, as durations from now.
func (c *Clock) Pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, t := range c.timers {
		if !t.stopped {
			out = append(out, t.at.Sub(c.now))
		}
	}
	slices.Sort(out)
	return out
}
