// Package store holds Conclave's management data (users, rooms, enrolments,
// sessions) behind the Store interface, so that the embedded SQLite database
// and a later PostgreSQL implementation are interchangeable for callers.
//
// All times handed to a Store are kept in UTC with nanosecond precision; the
// zero time.Time means "not set" wherever a field documents it.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors returned (possibly wrapped) by every Store implementation.
// Test for them with errors.Is.
var (
	// ErrNotFound reports that the requested record does not exist (or, for
	// ConsumeEnrolment, that it cannot be used).
	ErrNotFound = errors.New("not found")
	// ErrExists reports that a record with the same unique key (username,
	// room alias, token hash) already exists.
	ErrExists = errors.New("already exists")
)

// Role is the role of a user account.
type Role string

// The roles a user can hold.
const (
	RoleAdmin Role = "admin"
	RoleUser  Role = "user"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleUser
}

// User is a local user account.
type User struct {
	ID       int64
	Username string // unique, compared case-insensitively, see ValidUsername
	// DisplayName is the name shown to other participants.
	DisplayName string
	// PasswordHash is an encoded password hash (PHC string); empty means the
	// account cannot log in with a password.
	PasswordHash string
	Role         Role
	Enabled      bool
	CreatedAt    time.Time
	// PasswordChangedAt is when the password was last set; zero if never.
	PasswordChangedAt time.Time
}

// Room is a virtual meeting room (VMR), reached by its alias.
type Room struct {
	ID          int64
	Alias       string // unique, lower case, see ValidAlias
	DisplayName string
	OwnerID     int64 // owning user's ID; 0 means no owner
	CreatedAt   time.Time
}

// Enrolment is a one-time invitation to create an account with a given role.
// Only the SHA-256 hash of the token is stored.
type Enrolment struct {
	TokenHash []byte
	Role      Role
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero if unused
}

// Session is a logged-in browser or API session. Only a hash of the session
// token is stored.
type Session struct {
	IDHash    []byte
	UserID    int64
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute end of the session, whatever the activity
	CSRFToken string
	Remote    string // client address at creation, for display and audit
}

// Store is the management database. Implementations are safe for concurrent
// use. Methods that look a record up return an error wrapping ErrNotFound when
// it does not exist; methods that create one return an error wrapping
// ErrExists on a duplicate key.
type Store interface {
	// CreateUser inserts u (its ID is ignored) and returns it with its new ID.
	// Usernames are unique case-insensitively and must pass ValidUsername;
	// a zero CreatedAt is set to the current time.
	CreateUser(ctx context.Context, u User) (User, error)
	// UserByID returns the user with the given ID.
	UserByID(ctx context.Context, id int64) (User, error)
	// UserByName returns the user with the given username, compared
	// case-insensitively.
	UserByName(ctx context.Context, username string) (User, error)
	// ListUsers returns all users ordered by username.
	ListUsers(ctx context.Context) ([]User, error)
	// SetPassword replaces a user's password hash and records when it changed.
	SetPassword(ctx context.Context, id int64, hash string, changedAt time.Time) error
	// SetUserEnabled enables or disables a user account.
	SetUserEnabled(ctx context.Context, id int64, enabled bool) error
	// CountUsers returns the number of users holding role; an empty role
	// counts all users.
	CountUsers(ctx context.Context, role Role) (int, error)

	// CreateRoom inserts r (its ID is ignored) and returns it with its new ID.
	// The alias is stored in lower case and must then pass ValidAlias; a
	// zero CreatedAt is set to the current time.
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// RoomByAlias returns the room with the given alias, compared
	// case-insensitively.
	RoomByAlias(ctx context.Context, alias string) (Room, error)
	// ListRooms returns all rooms ordered by alias.
	ListRooms(ctx context.Context) ([]Room, error)
	// DeleteRoom removes the room with the given alias.
	DeleteRoom(ctx context.Context, alias string) error

	// CreateEnrolment stores a new, unused enrolment.
	CreateEnrolment(ctx context.Context, e Enrolment) error
	// EnrolmentByHash returns the enrolment with tokenHash, used or not.
	EnrolmentByHash(ctx context.Context, tokenHash []byte) (Enrolment, error)
	// ConsumeEnrolment atomically marks the enrolment with tokenHash as used
	// at now and returns it, provided it is unused and not expired at now.
	// Unknown, used and expired enrolments all yield ErrNotFound.
	ConsumeEnrolment(ctx context.Context, tokenHash []byte, now time.Time) (Enrolment, error)

	// CreateSession stores a new session.
	CreateSession(ctx context.Context, s Session) error
	// SessionByID returns the session with the given ID hash, expired or not.
	SessionByID(ctx context.Context, idHash []byte) (Session, error)
	// TouchSession records activity on a session.
	TouchSession(ctx context.Context, idHash []byte, lastSeen time.Time) error
	// DeleteSession removes one session.
	DeleteSession(ctx context.Context, idHash []byte) error
	// DeleteUserSessions removes every session of a user and returns how many
	// were removed.
	DeleteUserSessions(ctx context.Context, userID int64) (int64, error)
	// DeleteExpiredSessions removes sessions whose absolute expiry is at or
	// before now and returns how many were removed.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error)

	// Close releases the store's resources.
	Close() error
}

// MaxAliasLen is the maximum length of a room alias.
const MaxAliasLen = 64

// MaxUsernameLen is the maximum length of a username.
const MaxUsernameLen = 64

// ValidAlias reports, as a user-facing error, why alias is not a valid room
// alias: 1 to 64 characters among lower-case letters a-z, digits, '-', '_'
// and '.', starting with a letter or digit.
func ValidAlias(alias string) error {
	return validName("room alias", alias, MaxAliasLen, false, "")
}

// ValidUsername reports, as a user-facing error, why name is not a valid
// username: 1 to 64 characters among ASCII letters, digits, '-', '_', '.'
// and '@', starting with a letter or digit. Usernames are compared
// case-insensitively.
func ValidUsername(name string) error {
	return validName("username", name, MaxUsernameLen, true, "@")
}

// validName checks the shared syntax of aliases and usernames.
func validName(what, s string, maxLen int, upper bool, extra string) error {
	if s == "" {
		return fmt.Errorf("the %s is empty; choose one of 1 to %d characters", what, maxLen)
	}
	if len(s) > maxLen {
		return fmt.Errorf("the %s is %d characters long; it must be at most %d", what, len(s), maxLen)
	}
	allowed := "lower-case letters a-z, digits, '-', '_' and '.'"
	if upper {
		allowed = "letters a-z or A-Z, digits, '-', '_', '.' and '@'"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || upper && c >= 'A' && c <= 'Z'
		if i == 0 && !alnum {
			return fmt.Errorf("the %s %q must start with a letter or a digit", what, s)
		}
		if alnum || c == '-' || c == '_' || c == '.' || strings.IndexByte(extra, c) >= 0 {
			continue
		}
		if c >= 0x80 {
			return fmt.Errorf("the %s %q contains a non-ASCII character; use only %s", what, s, allowed)
		}
		return fmt.Errorf("the %s %q contains %q; use only %s", what, s, string(c), allowed)
	}
	return nil
}
