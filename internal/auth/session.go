package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"time"

	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/store"
)

// Session timeouts used when SessionConfig leaves them zero.
const (
	DefaultIdleTimeout      = 30 * time.Minute
	DefaultAdminIdleTimeout = 5 * time.Minute
	DefaultMaxLifetime      = 12 * time.Hour
)

// Session count limits used when SessionConfig leaves them zero.
const (
	DefaultMaxSessionsPerUser = 10
	DefaultMaxAdminSessions   = 100
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
	// MaxSessionsPerUser is how many live sessions one account may hold
	// (DefaultMaxSessionsPerUser); negative means no limit.
	MaxSessionsPerUser int
	// MaxAdminSessions is how many live sessions all administrators
	// together may hold (DefaultMaxAdminSessions); negative means no limit.
	MaxAdminSessions int
	// Audit receives refused sessions and ended sessions; nil records
	// nothing.
	Audit audit.Recorder
}

// ErrTooManySessions is matched (with errors.Is) by a *SessionLimitError.
var ErrTooManySessions = errors.New("too many sessions")

// SessionLimitError refuses a new session because a limit is reached. A
// login over a limit is refused rather than ending an older session, so that
// someone holding a stolen password cannot sign the rightful user out (and
// an administrator is not signed out by a colleague's login).
type SessionLimitError struct {
	// Admin: the limit of all administrators' sessions together, rather
	// than the account's own.
	Admin bool
	// Max is the limit.
	Max int
	// IdleTimeout is how long a session lasts without activity.
	IdleTimeout time.Duration
}

// Error is a sentence for the person signing in.
func (e *SessionLimitError) Error() string {
	if e.Admin {
		return fmt.Sprintf("%d administrator sessions are open, the most allowed; try again when one has been signed out or has been idle for %s",
			e.Max, humanDuration(e.IdleTimeout))
	}
	return fmt.Sprintf("you already have %d open sessions, the most allowed; sign out of one of them, or wait until one has been idle for %s, then try again",
		e.Max, humanDuration(e.IdleTimeout))
}

// Is makes errors.Is(err, ErrTooManySessions) true.
func (e *SessionLimitError) Is(target error) bool { return target == ErrTooManySessions }

// Sessions creates, checks and ends login sessions. The client holds a
// random token; the store holds only its SHA-256 hash.
type Sessions struct {
	store store.Store
	clock clock.Clock
	cfg   SessionConfig
	audit audit.Recorder
}

// NewSessions returns a session manager on st. A nil clock means
// clock.System.
func NewSessions(st store.Store, clk clock.Clock, cfg SessionConfig) *Sessions {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AdminIdleTimeout <= 0 {
		cfg.AdminIdleTimeout = DefaultAdminIdleTimeout
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxSessionsPerUser == 0 {
		cfg.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if cfg.MaxAdminSessions == 0 {
		cfg.MaxAdminSessions = DefaultMaxAdminSessions
	}
	rec := cfg.Audit
	if rec == nil {
		rec = audit.Discard{}
	}
	return &Sessions{store: st, clock: clock.Or(clk), cfg: cfg, audit: rec}
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
//
// A session that would exceed MaxSessionsPerUser or, for an administrator,
// MaxAdminSessions is refused with a *SessionLimitError (and recorded in the
// audit log). Only live sessions count: those neither past their lifetime
// nor idle for longer than their role's idle timeout.
func (m *Sessions) Create(ctx context.Context, u store.User, remote string) (string, store.Session, error) {
	return m.CreateWith(ctx, u, remote, SessionInfo{})
}

// SessionInfo says where and how a session was opened.
type SessionInfo struct {
	// Plane is the listener ("", "meeting" or "admin"); see
	// store.Session.
	Plane string
	// Method is how the account authenticated: "password", "ldap",
	// "oidc" or "certificate".
	Method string
}

// CreateWith is Create for a session opened on a given plane with a given
// method.
func (m *Sessions) CreateWith(ctx context.Context, u store.User, remote string, info SessionInfo) (string, store.Session, error) {
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
		Plane: info.Plane, Method: info.Method,
	}
	var limits []store.SessionLimit
	if m.cfg.MaxSessionsPerUser > 0 {
		limits = append(limits, store.SessionLimit{Max: m.cfg.MaxSessionsPerUser, Filter: store.SessionFilter{
			UserID: u.ID, Now: now, IdleAfter: now.Add(-m.IdleTimeout(u.Role)),
		}})
	}
	if u.Role == store.RoleAdmin && m.cfg.MaxAdminSessions > 0 {
		limits = append(limits, store.SessionLimit{Max: m.cfg.MaxAdminSessions, Filter: store.SessionFilter{
			Role: store.RoleAdmin, Now: now, IdleAfter: now.Add(-m.cfg.AdminIdleTimeout),
		}})
	}
	err = m.store.CreateSessionLimited(ctx, s, limits)
	var le *store.SessionLimitError
	if errors.As(err, &le) {
		refused := &SessionLimitError{Admin: le.Limit.Filter.UserID == 0, Max: le.Limit.Max, IdleTimeout: m.IdleTimeout(u.Role)}
		if refused.Admin {
			refused.IdleTimeout = m.cfg.AdminIdleTimeout
		}
		scope := "user"
		if refused.Admin {
			scope = "administrators"
		}
		if err := m.audit.Record(ctx, audit.Event{Time: now, Actor: u.Username, Source: remote,
			Action: audit.ActionSessionRefused, Target: u.Username, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"limit": strconv.Itoa(le.Limit.Max), "scope": scope}}); err != nil {
			return "", store.Session{}, fmt.Errorf("create session: audit: %w", err)
		}
		return "", store.Session{}, refused
	}
	if err != nil {
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
	return m.lookup(ctx, token, true)
}

// Peek is Lookup without recording activity, for requests a page makes
// by itself (a periodic refresh): they must not keep an unattended
// session alive past its idle timeout.
func (m *Sessions) Peek(ctx context.Context, token string) (store.Session, store.User, error) {
	return m.lookup(ctx, token, false)
}

func (m *Sessions) lookup(ctx context.Context, token string, touch bool) (store.Session, store.User, error) {
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
	if !touch {
		return s, u, nil
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

// DeleteUser ends every session of the user ("sign out everywhere"), as
// after a password change or when the account is disabled, and returns how
// many were ended. It is recorded in the audit log, with the actor and
// source of the context (see audit.WithActor and audit.WithSource).
func (m *Sessions) DeleteUser(ctx context.Context, userID int64) (int64, error) {
	n, err := m.store.DeleteUserSessions(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	if err := m.recordEnded(ctx, userID, n, "all"); err != nil {
		return n, err
	}
	return n, nil
}

// recordEnded records that n sessions of a user were ended.
func (m *Sessions) recordEnded(ctx context.Context, userID, n int64, scope string) error {
	if _, discard := m.audit.(audit.Discard); discard {
		return nil
	}
	target := "user " + strconv.FormatInt(userID, 10)
	if u, err := m.store.UserByID(ctx, userID); err == nil {
		target = u.Username
	}
	if err := m.audit.Record(ctx, audit.Event{Time: m.clock.Now().UTC(), Actor: audit.ActorFrom(ctx),
		Source: audit.SourceFrom(ctx), Action: audit.ActionSessionsEnded, Target: target, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"count": strconv.FormatInt(n, 10), "scope": scope}}); err != nil {
		return fmt.Errorf("delete sessions (they were deleted): audit: %w", err)
	}
	return nil
}

// DeleteOthers ends every session of the user but the one holding token,
// as after a password change: whoever else held a session (with the old
// password, or a stolen cookie) is signed out. It is recorded in the audit
// log like DeleteUser.
func (m *Sessions) DeleteOthers(ctx context.Context, userID int64, token string) (int64, error) {
	hash, ok := hashToken(token)
	if !ok {
		return m.DeleteUser(ctx, userID)
	}
	n, err := m.store.DeleteOtherUserSessions(ctx, userID, hash)
	if err != nil {
		return 0, fmt.Errorf("delete other sessions: %w", err)
	}
	if err := m.recordEnded(ctx, userID, n, "other-sessions"); err != nil {
		return n, err
	}
	return n, nil
}

// ValidCSRF reports, in constant time, whether token is the CSRF token of s.
func ValidCSRF(s store.Session, token string) bool {
	return s.CSRFToken != "" && subtle.ConstantTimeCompare([]byte(s.CSRFToken), []byte(token)) == 1
}
