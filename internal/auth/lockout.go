package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"conclave/internal/store"
)

// LockoutPolicy slows down, then briefly locks, password guessing against
// one username. See docs/lockout.md for the reasoning.
//
// The rule, with the defaults in brackets: failures under a username are
// counted in a run that ends when Window [15 min] passes without a failure
// or when a lock ends. From the DelayAfter-th [5th] failure on, the next
// attempt is refused until a delay has passed: BaseDelay [1 s] after the
// DelayAfter-th failure, doubling with each further failure up to MaxDelay
// [1 min]. The LockAfter-th [10th] failure locks the username for
// LockDuration [15 min]. A successful login, or an administrator's unlock
// or password reset, clears the run.
//
// An attempt refused for a delay or a lock is answered at once, without
// looking at the password, and changes nothing: hammering a locked account
// neither extends its lock nor teaches anything about the password, and
// every lock ends on time. Each attempt that is checked is counted before
// the password is verified (and forgiven if it was right), so parallel
// requests cannot slip extra guesses past the limit.
//
// Usernames without an account are throttled exactly like real ones, so
// the answers do not tell which accounts exist.
//
// Its fields are taken as given; start from DefaultLockoutPolicy to change
// some of them.
type LockoutPolicy struct {
	// Window is how long without a failure ends a run of failures.
	Window time.Duration
	// DelayAfter is the failure from which each further attempt waits;
	// 0 means no delays.
	DelayAfter int
	// BaseDelay is the first delay; each further failure doubles it.
	BaseDelay time.Duration
	// MaxDelay caps the delay.
	MaxDelay time.Duration
	// LockAfter is the failure that locks the username; 0 means never.
	LockAfter int
	// LockDuration is how long a lock lasts.
	LockDuration time.Duration
}

// DefaultLockoutPolicy returns the lockout rule described at LockoutPolicy.
func DefaultLockoutPolicy() LockoutPolicy {
	return LockoutPolicy{
		Window:       15 * time.Minute,
		DelayAfter:   5,
		BaseDelay:    time.Second,
		MaxDelay:     time.Minute,
		LockAfter:    10,
		LockDuration: 15 * time.Minute,
	}
}

// ErrLoginThrottled is matched (with errors.Is) by a *ThrottleError.
var ErrLoginThrottled = errors.New("too many failed sign-in attempts")

// ThrottleError refuses an attempt made during a delay or a lock. It says
// nothing about whether the account exists or the password was right.
type ThrottleError struct {
	Locked bool      // a lock, rather than a delay between attempts
	Until  time.Time // when attempts are checked again
	Wait   time.Duration
}

// Error is a sentence for the person signing in.
func (e *ThrottleError) Error() string {
	if e.Locked {
		return fmt.Sprintf("too many failed sign-in attempts for this username; it is locked until %s (in %s); try again then, or ask an administrator to unlock it",
			e.Until.UTC().Format("15:04 MST"), humanDuration(e.Wait))
	}
	return fmt.Sprintf("too many failed sign-in attempts for this username; wait %s before trying again", humanDuration(e.Wait))
}

// Is makes errors.Is(err, ErrLoginThrottled) true.
func (e *ThrottleError) Is(target error) bool { return target == ErrLoginThrottled }

// throttleKey is the store key of a username's throttle record: the
// username folded to lower case as the store compares usernames (ASCII
// only), cut to one byte more than the longest valid username, since longer
// names all share the fate of unknown ones.
func throttleKey(username string) string {
	var b strings.Builder
	b.WriteString("user:")
	for i := 0; i < len(username) && i <= store.MaxUsernameLen; i++ {
		c := username[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// begin decides, at now, about an attempt under the throttle record t. It
// returns the record to store, a non-nil refusal if the attempt must not be
// checked, and whether counting this attempt as a failure locks the key.
func (p LockoutPolicy) begin(t store.LoginThrottle, now time.Time) (store.LoginThrottle, *ThrottleError, bool) {
	if now.Before(t.LockedUntil) {
		return t, &ThrottleError{Locked: true, Until: t.LockedUntil, Wait: t.LockedUntil.Sub(now)}, false
	}
	if now.Before(t.NotBefore) {
		return t, &ThrottleError{Until: t.NotBefore, Wait: t.NotBefore.Sub(now)}, false
	}
	if t.LastFailure.IsZero() || now.Sub(t.LastFailure) >= p.Window || !t.LockedUntil.IsZero() {
		// A new run: the last one timed out, or its lock has ended.
		t = store.LoginThrottle{Key: t.Key}
	}
	t.Failures++
	t.LastFailure = now
	t.NotBefore = time.Time{}
	if p.LockAfter > 0 && t.Failures >= p.LockAfter {
		t.LockedUntil = now.Add(p.LockDuration)
		return t, nil, true
	}
	if p.DelayAfter > 0 && t.Failures >= p.DelayAfter {
		t.NotBefore = now.Add(p.delay(t.Failures - p.DelayAfter))
	}
	return t, nil, false
}

// delay returns BaseDelay doubled k times, capped at MaxDelay.
func (p LockoutPolicy) delay(k int) time.Duration {
	d := p.BaseDelay
	for i := 0; i < k && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}
