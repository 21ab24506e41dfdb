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
