package auth

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// PasswordPolicy says which passwords may be chosen and how long they last.
// Its fields are taken as given; start from DefaultPasswordPolicy to change
// some of them.
type PasswordPolicy struct {
	// MinLength is the least number of characters (at least 1; the most is
	// always MaxPasswordLen).
	MinLength int
	// RequireLower, RequireUpper, RequireDigit and RequireSpecial each ask
	// for at least one character of the class. Special is anything that is
	// neither a letter nor a digit.
	RequireLower, RequireUpper, RequireDigit, RequireSpecial bool
	// History is how many recent passwords, the current one included, may
	// not be chosen again; 0 turns the check off. The store keeps
	// History-1 retired hashes per account, so raising History takes
	// effect as new changes are made.
	History int
	// MaxAge is how long a password lasts: at the first login after it,
	// the user must choose a new one. 0 means passwords do not expire.
	MaxAge time.Duration
	// MinAge is how long after a change the user may not change the
	// password again, so that History cannot be defeated by changing
	// several times in a row. 0 means no minimum. It does not apply to an
	// administrator resetting another account's password, nor to a change
	// the user is required to make (after such a reset or when the
	// password is past MaxAge).
	MinAge time.Duration
}

// DefaultPasswordPolicy returns the policy of DESIGN.md: at least 12
// characters of all four classes, none of the last 5 passwords again,
// a change every 60 days at most and every 10 days at least.
func DefaultPasswordPolicy() PasswordPolicy {
	return PasswordPolicy{
		MinLength:    MinPasswordLen,
		RequireLower: true, RequireUpper: true, RequireDigit: true, RequireSpecial: true,
		History: 5,
		MaxAge:  60 * 24 * time.Hour,
		MinAge:  10 * 24 * time.Hour,
	}
}

// Check returns a *PolicyError if pw is not an acceptable new password under
// p: its length and character classes. History and ages are checked by
// Accounts, which knows the account.
func (p PasswordPolicy) Check(pw string) error {
	if !utf8.ValidString(pw) {
		return &PolicyError{"the password is not valid UTF-8 text"}
	}
	minLen := max(p.MinLength, 1)
	n := utf8.RuneCountInString(pw)
	if n < minLen {
		return &PolicyError{fmt.Sprintf("the password has %d characters; it must have at least %d", n, minLen)}
	}
	if n > MaxPasswordLen {
		return &PolicyError{fmt.Sprintf("the password has %d characters; it must have at most %d", n, MaxPasswordLen)}
	}
	var lower, upper, digit, special bool
	for _, r := range pw {
		switch {
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsLetter(r):
			// A letter without case (as in many scripts) counts as neither.
		default:
			special = true
		}
	}
	var missing []string
	if p.RequireLower && !lower {
		missing = append(missing, "a lower-case letter")
	}
	if p.RequireUpper && !upper {
		missing = append(missing, "an upper-case letter")
	}
	if p.RequireDigit && !digit {
		missing = append(missing, "a digit")
	}
	if p.RequireSpecial && !special {
		missing = append(missing, "a special character such as ! or #")
	}
	if len(missing) > 0 {
		return &PolicyError{"the password must also contain " + joinAnd(missing)}
	}
	return nil
}

// humanDuration writes d for people: "10 days", "1 day", "12 hours",
// "15 minutes", "4 seconds".
func humanDuration(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	default:
		// Round up, so that "wait 1 second" is never too short.
		return unit(int64((d+time.Second-1)/time.Second), "second")
	}
}
