package sfu

import (
	"sync"
	"time"
)

// fakeClock is a dynacast clock that moves only when a test advances it;
// timers fire, in order, inside advance.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.t.Add(d), f: f}
	c.timers = append(c.timers, ft)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !ft.stopped
		ft.stopped = true
		return was
	}
}

// advance moves the clock by d, firing the timers due on the way.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	end := c.t.Add(d)
	for {
		var next *fakeTimer
		for _, ft := range c.timers {
			if !ft.stopped && !ft.at.After(end) && (next == nil || ft.at.Before(next.at)) {
				next = ft
			}
		}
		if next == nil {
			break
		}
		next.stopped = true
		c.t = next.at
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.t = end
	c.mu.Unlock()
}

// useClock makes d's dynacast run on c.
func (c *fakeClock) use(d *dynacast) {
	d.now, d.afterFunc = c.now, c.afterFunc
}
