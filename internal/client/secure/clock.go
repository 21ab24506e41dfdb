package secure

import "time"

// Clock is the time source of a Session: the debounce before a rotation,
// the delay before switching to a rotated key, key retention and key
// requests all use it, so that tests can drive time instead of sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on a goroutine of its own after d, unless the
	// returned stop function is called first (it reports whether it
	// stopped the call).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
