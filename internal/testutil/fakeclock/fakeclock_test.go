package fakeclock

import (
	"strings"
	"sync"
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func TestNowAdvanceSet(t *testing.T) {
	c := New(epoch)
	if !c.Now().Equal(epoch) {
		t.Fatalf("Now = %v, want %v", c.Now(), epoch)
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Advance(time.Minute)
			_ = c.Now()
		}()
	}
	wg.Wait()
	if want := epoch.Add(10 * time.Minute); !c.Now().Equal(want) {
		t.Errorf("after 10 Advance(1m): %v, want %v", c.Now(), want)
	}
	c.Set(epoch)
	if !c.Now().Equal(epoch) {
		t.Errorf("after Set back: %v, want %v", c.Now(), epoch)
	}
}

// Timers run inside Advance (and a forward Set), in the order of their
// deadlines, with the clock at each deadline.
func TestTimers(t *testing.T) {
	c := New(epoch)
	var got []string
	c.AfterFunc(2*time.Second, func() { got = append(got, "b@"+c.Now().Sub(epoch).String()) })
	c.AfterFunc(time.Second, func() { got = append(got, "a@"+c.Now().Sub(epoch).String()) })
	stop := c.AfterFunc(1500*time.Millisecond, func() { got = append(got, "stopped") })
	if p := c.Pending(); len(p) != 3 || p[0] != time.Second || p[2] != 2*time.Second {
		t.Fatalf("Pending = %v", p)
	}
	if !stop() {
		t.Fatal("stop reported false")
	}
	c.Advance(1500 * time.Millisecond)
	c.Set(epoch.Add(5 * time.Second))
	if want := "a@1s b@2s"; strings.Join(got, " ") != want {
		t.Fatalf("ran %q, want %q", strings.Join(got, " "), want)
	}
	if p := c.Pending(); len(p) != 0 {
		t.Fatalf("Pending after all ran = %v", p)
	}
}

func TestStep(t *testing.T) {
	c := New(epoch)
	c.Step(time.Second)
	a, b := c.Now(), c.Now()
	if b.Sub(a) != time.Second {
		t.Fatalf("readings %v apart, want 1s", b.Sub(a))
	}
}

// Jump runs each timer due within it once, at the end, in deadline order:
// a periodic timer re-armed from its function does not run again.
func TestJump(t *testing.T) {
	c := New(epoch)
	var got []string
	ticks := 0
	var tick func()
	tick = func() { ticks++; c.AfterFunc(2*time.Second, tick) }
	c.AfterFunc(2*time.Second, tick)
	c.AfterFunc(time.Hour, func() { got = append(got, "b@"+c.Now().Sub(epoch).String()) })
	c.AfterFunc(time.Minute, func() { got = append(got, "a@"+c.Now().Sub(epoch).String()) })
	c.AfterFunc(48*time.Hour, func() { got = append(got, "later") })
	c.Jump(24 * time.Hour)
	if want := "a@24h0m0s b@24h0m0s"; strings.Join(got, " ") != want {
		t.Fatalf("ran %q, want %q", strings.Join(got, " "), want)
	}
	if ticks != 1 {
		t.Fatalf("periodic timer ran %d times in a jump, want 1", ticks)
	}
	if p := c.Pending(); len(p) != 2 || p[0] != 2*time.Second || p[1] != 24*time.Hour {
		t.Fatalf("Pending after the jump = %v", p)
	}
}
