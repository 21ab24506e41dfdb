package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"conclave/internal/clock"
	"conclave/internal/store"
)

// DefaultEnrolmentTTL is how long an enrolment link stays valid unless
// EnrolConfig says otherwise.
const DefaultEnrolmentTTL = 24 * time.Hour

// MaxDisplayNameLen is the maximum length, in characters, of a display name.
const MaxDisplayNameLen = 128

// Errors returned by Enroller.Redeem. Their messages are meant for the person
// enrolling.
var (
	// ErrEnrolmentInvalid covers unknown, expired and already used tokens
	// alike, so that a caller learns nothing about which it was.
	ErrEnrolmentInvalid = errors.New("this enrolment link is invalid, expired or already used")
	// ErrUsernameTaken reports that the chosen username belongs to another
	// account.
	ErrUsernameTaken = errors.New("this username is already taken; choose another one")
)

// EnrolConfig configures an Enroller. Zero fields take their defaults.
type EnrolConfig struct {
	// TTL is how long a new enrolment stays valid (DefaultEnrolmentTTL).
	TTL time.Duration
	// Argon2 are the parameters used to hash the new account's password
	// (DefaultArgon2).
	Argon2 Argon2Params
	// Policy is the password policy new passwords must satisfy; nil means
	// DefaultPasswordPolicy. Give the one Accounts uses.
	Policy *PasswordPolicy
}

// Enroller creates one-time enrolment tokens and turns them into accounts.
// Only the SHA-256 hash of a token is stored, so a copy of the database does
// not reveal usable links.
type Enroller struct {
	store  store.Store
	clock  clock.Clock
	ttl    time.Duration
	argon2 Argon2Params
	policy PasswordPolicy
}

// NewEnroller returns an Enroller on st. A nil clock means clock.System.
func NewEnroller(st store.Store, clk clock.Clock, cfg EnrolConfig) *Enroller {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultEnrolmentTTL
	}
	if cfg.Argon2 == (Argon2Params{}) {
		cfg.Argon2 = DefaultArgon2
	}
	policy := DefaultPasswordPolicy()
	if cfg.Policy != nil {
		policy = *cfg.Policy
	}
	return &Enroller{store: st, clock: clock.Or(clk), ttl: cfg.TTL, argon2: cfg.Argon2, policy: policy}
}

// Create makes a new enrolment for an account with the given role and
// returns its token (32 random bytes, base64url without padding). The token
// is shown once; it cannot be recovered from the store.
func (e *Enroller) Create(ctx context.Context, role store.Role) (string, error) {
	if !role.Valid() {
		return "", fmt.Errorf("create enrolment: unknown role %q", role)
	}
	tok, hash, err := newToken()
	if err != nil {
		return "", fmt.Errorf("create enrolment: %w", err)
	}
	now := e.clock.Now().UTC()
	err = e.store.CreateEnrolment(ctx, store.Enrolment{
		TokenHash: hash, Role: role, CreatedAt: now, ExpiresAt: now.Add(e.ttl),
	})
	if err != nil {
		return "", fmt.Errorf("create enrolment: %w", err)
	}
	return tok, nil
}

// Redeem uses the enrolment token to create an enabled account with the
// enrolment's role. An empty displayName defaults to the username.
//
// The username, display name and password are checked before the token is
// consumed, so a refused password (a *PolicyError) or username leaves the
// link usable. An unknown, expired or used token gives ErrEnrolmentInvalid;
// it is checked before the username, so that only a link holder learns
// whether a username exists. A taken username gives ErrUsernameTaken with
// the token still unused, except in the narrow race where another account
// takes the name between the check and the creation: the token is then
// consumed (the store has no transaction spanning both steps) and the error
// says to ask for a new link.
func (e *Enroller) Redeem(ctx context.Context, token, username, displayName, password string) (store.User, error) {
	if err := store.ValidUsername(username); err != nil {
		return store.User{}, err
	}
	displayName = strings.TrimSpace(displayName)
	if displayName == "" {
		displayName = username
	}
	if err := validDisplayName(displayName); err != nil {
		return store.User{}, err
	}
	if err := e.policy.Check(password); err != nil {
		return store.User{}, err
	}
	hash, ok := hashToken(token)
	if !ok {
		return store.User{}, ErrEnrolmentInvalid
	}
	now := e.clock.Now().UTC()
	// Check the token before the username, so that only holders of a valid
	// link can learn whether a username exists.
	switch enr, err := e.store.EnrolmentByHash(ctx, hash); {
	case errors.Is(err, store.ErrNotFound):
		return store.User{}, ErrEnrolmentInvalid
	case err != nil:
		return store.User{}, fmt.Errorf("redeem enrolment: %w", err)
	case !enr.UsedAt.IsZero() || !now.Before(enr.ExpiresAt):
		return store.User{}, ErrEnrolmentInvalid
	}
	switch _, err := e.store.UserByName(ctx, username); {
	case err == nil:
		return store.User{}, ErrUsernameTaken
	case !errors.Is(err, store.ErrNotFound):
		return store.User{}, fmt.Errorf("redeem enrolment: %w", err)
	}
	pwHash, err := e.argon2.Hash(password)
	if err != nil {
		return store.User{}, fmt.Errorf("redeem enrolment: %w", err)
	}

	enr, err := e.store.ConsumeEnrolment(ctx, hash, now)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, ErrEnrolmentInvalid
	}
	if err != nil {
		return store.User{}, fmt.Errorf("redeem enrolment: %w", err)
	}
	u, err := e.store.CreateUser(ctx, store.User{
		Username: username, DisplayName: displayName, PasswordHash: pwHash,
		Role: enr.Role, Enabled: true, CreatedAt: now, PasswordChangedAt: now,
	})
	if errors.Is(err, store.ErrExists) {
		return store.User{}, fmt.Errorf("%w (the enrolment link has been used up; ask for a new one)", ErrUsernameTaken)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("redeem enrolment: create user: %w", err)
	}
	return u, nil
}

// validDisplayName checks a trimmed display name.
func validDisplayName(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("the display name is not valid UTF-8 text")
	}
	if n := utf8.RuneCountInString(name); n > MaxDisplayNameLen {
		return fmt.Errorf("the display name has %d characters; it must have at most %d", n, MaxDisplayNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return errors.New("the display name contains a control character; use only visible characters and spaces")
		}
	}
	return nil
}
