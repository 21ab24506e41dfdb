package auth

import (
	"sync"
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(epoch)
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
		t.Errorf("after Set: %v, want %v", c.Now(), epoch)
	}
	var _ Clock = SystemClock{}
	if d := time.Since(SystemClock{}.Now()); d < 0 || d > time.Minute {
		t.Errorf("SystemClock is off by %v", d)
	}
}
