package clock

import (
	"sync"
	"time"
)

// ticker is Every's state.
type ticker struct {
	c Clock
	d time.Duration
	f func()

	mu      sync.Mutex
	stop    func() bool
	stopped bool
}

// arm schedules the next call; called with t.mu held.
func (t *ticker) arm() {
	t.stop = t.c.AfterFunc(t.d, t.fire)
}

func (t *ticker) fire() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.f()
	t.mu.Lock()
	if !t.stopped {
		t.arm()
	}
	t.mu.Unlock()
}

func (t *ticker) halt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.stopped = true
	t.stop()
}
