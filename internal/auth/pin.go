package auth

import (
	"crypto/subtle"
	"fmt"
	"unicode/utf8"
)

// PINArgon2 are the parameters HashPIN uses: 19 MiB, 2 passes, 1 lane
// (OWASP's lower Argon2id setting). A PIN is checked on every join, so it
// costs less than a password. Six digits are a million guesses: the hash
// keeps PINs from being read off a copied database at a glance, but an
// offline search would find one in hours, so the database must stay
// protected, and online guessing is what the room and address limits stop.
var PINArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// PIN lengths.
const (
	DefaultPINMinLen = 6
	MaxPINLen        = 32
)

// dummyPINHash is verified in place of a missing PIN hash, so that a room
// without that PIN answers as slowly as one with it.
var dummyPINHash = encodePHC(PINArgon2, make([]byte, PINArgon2.SaltLen), make([]byte, PINArgon2.KeyLen))

// CheckPIN returns a *PolicyError if pin is not made of digits 0-9 only,
// at least minLen of them (DefaultPINMinLen if minLen < 1) and at most
// MaxPINLen.
func CheckPIN(pin string, minLen int) error {
	if minLen < 1 {
		minLen = DefaultPINMinLen
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return &PolicyError{"a PIN may contain only the digits 0 to 9"}
		}
	}
	switch n := utf8.RuneCountInString(pin); {
	case n < minLen:
		return &PolicyError{fmt.Sprintf("the PIN has %d digits; it must have at least %d", n, minLen)}
	case n > MaxPINLen:
		return &PolicyError{fmt.Sprintf("the PIN has %d digits; it must have at most %d", n, MaxPINLen)}
	}
	return nil
}

// HashPIN hashes a PIN with PINArgon2 for store.Room's HostPINHash or
// GuestPINHash. It refuses a PIN that is empty or not all digits; check the
// length with CheckPIN first.
func HashPIN(pin string) (string, error) {
	if err := CheckPIN(pin, 1); err != nil {
		return "", fmt.Errorf("hash PIN: %w", err)
	}
	return PINArgon2.Hash(pin)
}

// VerifyPIN reports whether pin matches hash, in constant time. An empty
// hash (no such PIN) never matches but costs as much as a real one, so
// callers can answer alike whether or not a room has the PIN. An error
// means the hash itself is unusable.
func VerifyPIN(hash, pin string) (bool, error) {
	if hash == "" {
		_, _ = VerifyPassword(dummyPINHash, pin)
		return false, nil
	}
	ok, err := VerifyPassword(hash, pin)
	if err != nil {
		return false, fmt.Errorf("verify PIN: %w", err)
	}
	return ok, nil
}

// ErrSamePINs refuses a room whose host and guest PINs are the same: every
// guest would enter as host.
var ErrSamePINs = &PolicyError{"the host and guest PINs must differ"}

// CheckPINsDiffer returns ErrSamePINs when a room would end up with equal
// host and guest PINs. hostPIN and guestPIN are the PINs being set now
// ("" for one left unchanged or removed); hostHash and guestHash are the
// room's stored hashes for the PINs that are not being set ("" for none).
// Stored hashes are salted, so equality is checked by verifying the new
// PIN against the other PIN's hash, never by comparing the hashes.
func CheckPINsDiffer(hostPIN, guestPIN, hostHash, guestHash string) error {
	switch {
	case hostPIN != "" && guestPIN != "":
		if subtle.ConstantTimeCompare([]byte(hostPIN), []byte(guestPIN)) == 1 {
			return ErrSamePINs
		}
	case hostPIN != "" && guestHash != "":
		if ok, _ := VerifyPIN(guestHash, hostPIN); ok {
			return ErrSamePINs
		}
	case guestPIN != "" && hostHash != "":
		if ok, _ := VerifyPIN(hostHash, guestPIN); ok {
			return ErrSamePINs
		}
	}
	return nil
}
