package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the cost parameters of Argon2id password hashing.
type Argon2Params struct {
	Memory  uint32 // memory in KiB
	Time    uint32 // number of passes
	Threads uint8  // degree of parallelism
	SaltLen uint32 // salt length in bytes
	KeyLen  uint32 // derived key length in bytes
}

// DefaultArgon2 are the parameters HashPassword uses: 64 MiB, 3 passes,
// 2 lanes, 16-byte salt, 32-byte key. Treat it as a constant; pass another
// Argon2Params value where different costs are needed.
var DefaultArgon2 = Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}

// Bounds on Argon2 parameters. Hashes outside them are refused, so that a
// crafted hash string cannot make verification take gigabytes or minutes.
const (
	MaxArgon2Memory  = 1 << 20 // KiB, that is 1 GiB
	MaxArgon2Time    = 10
	MaxArgon2Threads = 16
	minSaltLen       = 8
	maxSaltLen       = 64
	minKeyLen        = 16
	maxKeyLen        = 64
)

// ErrMalformedHash reports a stored password hash that is not a PHC-format
// Argon2id string this package accepts.
var ErrMalformedHash = errors.New("malformed argon2id password hash")

// b64 is the base64 flavour of PHC strings: standard alphabet, no padding,
// canonical encodings only.
var b64 = base64.RawStdEncoding.Strict()

// check returns an error if p is outside the accepted bounds.
func (p Argon2Params) check() error {
	switch {
	case p.Time < 1 || p.Time > MaxArgon2Time:
		return fmt.Errorf("argon2 time %d out of range 1..%d", p.Time, MaxArgon2Time)
	case p.Threads < 1 || p.Threads > MaxArgon2Threads:
		return fmt.Errorf("argon2 threads %d out of range 1..%d", p.Threads, MaxArgon2Threads)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > MaxArgon2Memory:
		return fmt.Errorf("argon2 memory %d KiB out of range %d..%d", p.Memory, 8*uint32(p.Threads), MaxArgon2Memory)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("argon2 salt length %d out of range %d..%d", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("argon2 key length %d out of range %d..%d", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// Hash hashes pw with a fresh random salt and returns the PHC string
// "$argon2id$v=19$m=<memory>,t=<time>,p=<threads>$<salt>$<key>".
func (p Argon2Params) Hash(pw string) (string, error) {
	if err := p.check(); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return encodePHC(p, salt, key), nil
}

// HashPassword hashes pw with DefaultArgon2.
func HashPassword(pw string) (string, error) {
	return DefaultArgon2.Hash(pw)
}

// VerifyPassword reports whether pw matches the encoded hash, comparing in
// constant time. The cost parameters are read from the hash. An error means
// the hash itself is unusable (it wraps ErrMalformedHash), not a mismatch.
func VerifyPassword(encoded, pw string) (bool, error) {
	p, salt, key, err := parsePHC(encoded)
	if err != nil {
		return false, fmt.Errorf("verify password: %w", err)
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than p
// (or cannot be parsed), so that the password should be hashed again with p
// at the next successful login.
func NeedsRehash(encoded string, p Argon2Params) bool {
	got, _, _, err := parsePHC(encoded)
	return err != nil || got != p
}

func encodePHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// parsePHC parses an Argon2id PHC string strictly: fixed field order, decimal
// numbers without leading zeros, canonical unpadded base64, and parameters
// within bounds. A string it accepts re-encodes to itself.
func parsePHC(s string) (p Argon2Params, salt, key []byte, err error) {
	fail := func(why string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	if len(s) > 512 {
		return fail("too long")
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return fail("wrong number of fields")
	}
	if f[1] != "argon2id" {
		return fail("algorithm is not argon2id")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return fail("unsupported version")
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return fail("parameters are not m,t,p")
	}
	var v [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		num, ok := strings.CutPrefix(ps[i], name)
		if !ok {
			return fail("parameters are not m,t,p")
		}
		if v[i], ok = parseDecimal(num); !ok {
			return fail("bad number in parameter " + name[:1])
		}
	}
	if v[0] > MaxArgon2Memory || v[1] > MaxArgon2Time || v[2] > MaxArgon2Threads {
		return fail("parameters out of range")
	}
	// The decoder skips '\r' and '\n'; refuse them (and anything else
	// outside the alphabet) so that an accepted string is canonical.
	if !isB64(f[4]) || !isB64(f[5]) {
		return fail("bad base64 character")
	}
	if salt, err = b64.DecodeString(f[4]); err != nil {
		return fail("bad salt encoding")
	}
	if key, err = b64.DecodeString(f[5]); err != nil {
		return fail("bad key encoding")
	}
	p = Argon2Params{
		Memory: uint32(v[0]), Time: uint32(v[1]), Threads: uint8(v[2]),
		SaltLen: uint32(len(salt)), KeyLen: uint32(len(key)),
	}
	if err := p.check(); err != nil {
		return fail(err.Error())
	}
	return p, salt, key, nil
}

// isB64 reports whether s holds only characters of the standard base64
// alphabet.
func isB64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// parseDecimal parses a canonical decimal number of at most 10 digits.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + uint64(s[i]-'0')
	}
	return n, true
}

// Password policy bounds.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// PolicyError is a password refused by the password policy. Its message is
// a sentence meant for the person choosing the password.
type PolicyError struct {
	Reason string
}

// Error returns the reason the password was refused.
func (e *PolicyError) Error() string { return e.Reason }

// CheckPasswordPolicy returns a *PolicyError if pw does not satisfy the
// default password policy (DefaultPasswordPolicy): at least 12 and at most
// 256 characters, with at least one lower-case letter, one upper-case
// letter, one digit and one special character (anything that is not a
// letter or a digit).
func CheckPasswordPolicy(pw string) error {
	return DefaultPasswordPolicy().Check(pw)
}

// joinAnd joins items as an English list: "a", "a and b", "a, b and c".
func joinAnd(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
