package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"conclave/internal/store"
)

// Session timeouts used when SessionConfig leaves them zero.
const (
	DefaultIdleTimeout      = 30 * time.Minute
	DefaultAdminIdleTimeout = 5 * time.Minute
	DefaultMaxLifetime      = 12 * time.Hour
)

// ErrNoSession reports a session token that is unknown, expired, or whose
// account is gone or disabled. The client must log in again.
var ErrNoSession = errors.New("your session has ended; please sign in again")

// SessionConfig configures Sessions. Zero fields take their defaults.
type SessionConfig struct {
	// IdleTimeout ends a user's session after this long without activity
	// (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// AdminIdleTimeout is IdleTimeout for administrators
	// (DefaultAdminIdleTimeout).
	AdminIdleTimeout time.Duration
	// MaxLifetime ends a session this long after it was created, whatever
	// its activity (DefaultMaxLifetime).
	MaxLifetime time.Duration
}

// Sessions creates, checks and ends login sessions. The client holds a
// random token; the store holds only its SHA-256 hash.
type Sessions struct {
	store store.Store
	clock Clock
	cfg   SessionConfig
}

// NewSessions returns a session manager on st. A nil clock means
// SystemClock.
func NewSessions(st store.Store, clock Clock, cfg SessionConfig) *Sessions {
	if clock == nil {
		clock = SystemClock{}
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AdminIdleTimeout <= 0 {
		cfg.AdminIdleTimeout = DefaultAdminIdleTimeout
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	return &Sessions{store: st, clock: clock, cfg: cfg}
}

// IdleTimeout returns the idle timeout that applies to sessions of role.
func (m *Sessions) IdleTimeout(role store.Role) time.Duration {
	if role == store.RoleAdmin {
		return m.cfg.AdminIdleTimeout
	}
	return m.cfg.IdleTimeout
}

// Create starts a session for u, an account that has just authenticated,
// from the client address remote. It returns the session token to give the
// client (32 random bytes, base64url without padding) and the stored
// session, whose CSRFToken is a separate random value.
func (m *Sessions) Create(ctx context.Context, u store.User, remote string) (string, store.Session, error) {
	if !u.Enabled {
		return "", store.Session{}, fmt.Errorf("create session for user %d: the account is disabled", u.ID)
	}
	tok, hash, err := newToken()
	if err != nil {
		return "", store.Session{}, fmt.Errorf("create session: %w", err)
	}
	csrf, _, err := newToken()
	if err != nil {
		return "", store.Session{}, fmt.Errorf("create session: %w", err)
	}
	now := m.clock.Now().UTC()
	s := store.Session{
		IDHash: hash, UserID: u.ID, CreatedAt: now, LastSeen: now,
		ExpiresAt: now.Add(m.cfg.MaxLifetime), CSRFToken: csrf, Remote: remote,
	}
	if err := m.store.CreateSession(ctx, s); err != nil {
		return "", store.Session{}, fmt.Errorf("create session: %w", err)
	}
	return tok, s, nil
}

// Lookup returns the live session for token and its account, and records
// the activity. A session past its absolute lifetime or idle for longer than
// the idle timeout of its account's role, or whose account is gone or
// disabled, is deleted; all such cases, and unknown tokens, give
// ErrNoSession.
func (m *Sessions) Lookup(ctx context.Context, token string) (store.Session, store.User, error) {
	hash, ok := hashToken(token)
	if !ok {
		return store.Session{}, store.User{}, ErrNoSession
	}
	s, err := m.store.SessionByID(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return store.Session{}, store.User{}, ErrNoSession
	}
	if err != nil {
		return store.Session{}, store.User{}, fmt.Errorf("look up session: %w", err)
	}
	u, err := m.store.UserByID(ctx, s.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Session{}, store.User{}, fmt.Errorf("look up session: %w", err)
	}
	now := m.clock.Now().UTC()
	if err != nil || !u.Enabled || !now.Before(s.ExpiresAt) || now.Sub(s.LastSeen) >= m.IdleTimeout(u.Role) {
		if err := m.store.DeleteSession(ctx, hash); err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.Session{}, store.User{}, fmt.Errorf("delete ended session: %w", err)
		}
		return store.Session{}, store.User{}, ErrNoSession
	}
	if err := m.store.TouchSession(ctx, hash, now); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Deleted concurrently, by a logout for instance.
			return store.Session{}, store.User{}, ErrNoSession
		}
		return store.Session{}, store.User{}, fmt.Errorf("touch session: %w", err)
	}
	s.LastSeen = now
	return s, u, nil
}

// Delete ends the session for token (a logout). Unknown tokens are not an
// error.
func (m *Sessions) Delete(ctx context.Context, token string) error {
	hash, ok := hashToken(token)
	if !ok {
		return nil
	}
	if err := m.store.DeleteSession(ctx, hash); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUser ends every session of the user, as after a password change or
// when the account is disabled, and returns how many were ended.
func (m *Sessions) DeleteUser(ctx context.Context, userID int64) (int64, error) {
	n, err := m.store.DeleteUserSessions(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	return n, nil
}

// ValidCSRF reports, in constant time, whether token is the CSRF token of s.
func ValidCSRF(s store.Session, token string) bool {
	return s.CSRFToken != "" && subtle.ConstantTimeCompare([]byte(s.CSRFToken), []byte(token)) == 1
}
