package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// tokenLen is the number of random bytes in enrolment, session and CSRF
// tokens.
const tokenLen = 32

// newToken returns a fresh random token, base64url without padding, and the
// SHA-256 hash under which it is stored.
func newToken() (string, []byte, error) {
	b := make([]byte, tokenLen)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("random token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256(b)
	return tok, h[:], nil
}

// hashToken returns the stored hash of a token presented by a client, or
// false if the token is not of the form newToken produces.
func hashToken(tok string) ([]byte, bool) {
	if len(tok) != base64.RawURLEncoding.EncodedLen(tokenLen) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) != tokenLen {
		return nil, false
	}
	h := sha256.Sum256(b)
	return h[:], true
}
