// Package store holds Conclave's management data (users, rooms and their
// access settings and member lists, enrolments, sessions, password history,
// failed-login counters, the hash-chained audit log) behind the Store
// interface, so that the embedded SQLite database and a later PostgreSQL
// implementation are interchangeable for callers.
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
	// ErrLimit reports that CreateSessionLimited refused a session because
	// a limit was reached; the error is a *SessionLimitError.
	ErrLimit = errors.New("limit reached")
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

// User is a user account: local, or made from a directory (LDAP) or
// single sign-on (OIDC) identity.
//
// Role is the account's kind: RoleAdmin for a management account, which
// holds at least one management role in Roles (and gets the
// administrators' idle timeout and session limit), RoleUser for a meeting
// user, which holds none. The store keeps the two in step: CreateUser and
// SetUserRoles derive Role from Roles (an admin created without Roles
// gets the built-in role "administrator").
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
	// MustChangePassword is set when an administrator has reset the
	// password: the user must choose a new one at the next login.
	MustChangePassword bool
	// Roles are the names of the management roles the account holds
	// (built-in or custom, see internal/perm), sorted; empty for meeting
	// users.
	Roles []string
	// Source says where the account comes from: SourceLocal (the default
	// when empty), SourceLDAP or SourceOIDC. Directory and single sign-on
	// accounts have no local password: their own system checks it.
	Source string
	// ExternalID identifies the account in its source: the entry's DN for
	// LDAP, "issuer subject" for OIDC; empty for local accounts.
	ExternalID string
}

// Account sources.
const (
	SourceLocal = "local"
	SourceLDAP  = "ldap"
	SourceOIDC  = "oidc"
)

// DefaultAdminRole is the management role an administrator account gets
// when it is created without roles (the built-in role of every
// permission, see internal/perm).
const DefaultAdminRole = "administrator"

// CustomRole is an organisation-defined management role: a named set of
// permissions (internal/perm says which names exist).
type CustomRole struct {
	Name        string
	Description string
	Permissions []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Room is a virtual meeting room (VMR), reached by its alias.
//
// The access fields say who may enter; the meeting code applies them, the
// store only keeps them. The store picks no secure default: callers
// creating a room choose its access. The one exception keeps older callers
// working: CreateRoom given an empty Access creates the room with
// DefaultRoomAccess, which is also what rooms made before access control
// existed were migrated to (open, guests allowed and fully able to speak
// and present), because that is how they behaved.
type Room struct {
	ID          int64
	Alias       string // unique, lower case, see ValidAlias
	DisplayName string
	OwnerID     int64 // owning user's ID; 0 means no owner
	CreatedAt   time.Time

	// Access is how one gets in: AccessOpen, AccessPIN or AccessAccounts.
	Access Access
	// HostPINHash and GuestPINHash are Argon2id PHC strings of the host and
	// guest PINs (see auth.HashPIN), never the PINs; empty means none. An
	// AccessPIN room needs a host PIN.
	HostPINHash  string
	GuestPINHash string
	// AllowGuests lets people without the host PIN (AccessPIN) or without
	// an account (AccessAccounts) in as guests, with the guest PIN when
	// there is one.
	AllowGuests bool
	// GuestsMayUnmute and GuestsMayPresent let guests send audio and share
	// their screen; hosts may always.
	GuestsMayUnmute  bool
	GuestsMayPresent bool
	// MembersOnly, for AccessAccounts, admits only the users listed as
	// room members (see AddRoomMember); otherwise any logged-in user may
	// enter.
	MembersOnly bool
}

// Access is a room's entry mode.
type Access string

// The entry modes of a room.
const (
	// AccessOpen: anyone who knows the alias enters.
	AccessOpen Access = "open"
	// AccessPIN: the host PIN makes a host; the guest PIN (or none, when
	// there is no guest PIN and AllowGuests is set) makes a guest.
	AccessPIN Access = "pin"
	// AccessAccounts: logged-in users enter (only members if MembersOnly);
	// others only as guests if AllowGuests.
	AccessAccounts Access = "accounts"
)

// Valid reports whether a is one of the known entry modes.
func (a Access) Valid() bool {
	return a == AccessOpen || a == AccessPIN || a == AccessAccounts
}

// DefaultRoomAccess returns r with the access settings rooms had before
// access control: AccessOpen, guests allowed, guests may unmute and present,
// no PINs, not members-only.
func DefaultRoomAccess(r Room) Room {
	r.Access = AccessOpen
	r.HostPINHash, r.GuestPINHash = "", ""
	r.AllowGuests, r.GuestsMayUnmute, r.GuestsMayPresent = true, true, true
	r.MembersOnly = false
	return r
}

// checkAccess reports, as a user-facing error, why r's access settings are
// inconsistent.
func checkAccess(r Room) error {
	if !r.Access.Valid() {
		return fmt.Errorf("unknown room access %q; use open, pin or accounts", r.Access)
	}
	if r.Access == AccessPIN && r.HostPINHash == "" {
		return errors.New("a room entered by PIN needs a host PIN; set one or choose another access mode")
	}
	return nil
}

// MemberRole is a user's role in a room's member list.
type MemberRole string

// The roles of room members.
const (
	MemberHost   MemberRole = "host"
	MemberMember MemberRole = "member"
)

// Valid reports whether r is one of the known member roles.
func (r MemberRole) Valid() bool {
	return r == MemberHost || r == MemberMember
}

// RoomMember is one entry of a room's member list.
type RoomMember struct {
	RoomID   int64
	UserID   int64
	Username string // filled in by RoomMembers
	Role     MemberRole
}

// PasswordChange is a new password for ReplacePassword.
type PasswordChange struct {
	// Hash is the new password hash (PHC string).
	Hash string
	// ChangedAt becomes the user's PasswordChangedAt.
	ChangedAt time.Time
	// MustChange becomes the user's MustChangePassword.
	MustChange bool
	// KeepHistory is how many retired password hashes to keep for the user,
	// the one replaced now included; older ones are deleted.
	KeepHistory int
}

// LoginThrottle is the record of recent failed logins under one key (a
// username folded to lower case, whether or not such an account exists).
// Its meaning belongs to the auth package; the store keeps it across
// restarts.
type LoginThrottle struct {
	Key         string
	Failures    int       // failures counted in the current run
	LastFailure time.Time // time of the last counted failure
	NotBefore   time.Time // no attempt is checked before this (a delay)
	LockedUntil time.Time // the key is locked until this; zero if not locked
}

// SessionFilter selects sessions for CountSessions and SessionLimit. Only
// live sessions count: not expired at Now and, if IdleAfter is set, last
// seen after IdleAfter.
type SessionFilter struct {
	UserID    int64 // only this user's sessions; 0 means every user
	Role      Role  // only sessions of users holding this role; "" means any
	Now       time.Time
	IdleAfter time.Time // zero means no idle cut-off
}

// SessionLimit is one limit CreateSessionLimited enforces: fewer than Max
// sessions match Filter.
type SessionLimit struct {
	Filter SessionFilter
	Max    int
}

// SessionLimitError is returned (wrapped) by CreateSessionLimited when a
// limit is reached. It matches ErrLimit with errors.Is.
type SessionLimitError struct {
	Limit SessionLimit // the first limit that was reached
	Count int          // the matching live sessions
}

// Error describes the limit reached.
func (e *SessionLimitError) Error() string {
	return fmt.Sprintf("session limit reached: %d live sessions, at most %d allowed", e.Count, e.Limit.Max)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *SessionLimitError) Is(target error) bool { return target == ErrLimit }

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
	// Plane is the listener the session was made on: "" when the server
	// has one listener for everything, "meeting" or "admin" when
	// management has its own (--admin-listen). A session is only accepted
	// on its own plane.
	Plane string
	// Method says how the account authenticated: "password", "ldap",
	// "oidc", "certificate" ("" for sessions made before it was
	// recorded).
	Method string
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
	// SetPassword replaces a user's password hash and records when it
	// changed. It keeps no password history and leaves MustChangePassword
	// alone; ReplacePassword does both.
	SetPassword(ctx context.Context, id int64, hash string, changedAt time.Time) error
	// SetUserEnabled enables or disables a user account.
	SetUserEnabled(ctx context.Context, id int64, enabled bool) error
	// CountUsers returns the number of users holding role; an empty role
	// counts all users.
	CountUsers(ctx context.Context, role Role) (int, error)

	// AppendLogRecord appends a record to the E2EE transparency log and
	// returns its index (records are numbered from 0, without gaps). The
	// log is append-only: nothing changes or removes a record.
	AppendLogRecord(ctx context.Context, record []byte) (int64, error)
	// LogRecords returns up to limit records of the E2EE log from index
	// start on, in order.
	LogRecords(ctx context.Context, start int64, limit int) ([][]byte, error)

	// CreateRoom inserts r (its ID is ignored) and returns it with its new ID.
	// The alias is stored in lower case and must then pass ValidAlias; a
	// zero CreatedAt is set to the current time. An empty Access means
	// DefaultRoomAccess (then no PIN may be given); otherwise the access
	// settings are stored as given and must be consistent.
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// RoomByAlias returns the room with the given alias, compared
	// case-insensitively.
	RoomByAlias(ctx context.Context, alias string) (Room, error)
	// ListRooms returns all rooms ordered by alias.
	ListRooms(ctx context.Context) ([]Room, error)
	// RoomByID returns the room with the given ID.
	RoomByID(ctx context.Context, id int64) (Room, error)
	// UpdateRoom replaces the display name, owner and access settings of
	// the room with r.ID; the alias and creation time are kept. The access
	// settings must be consistent (a PIN room has a host PIN).
	UpdateRoom(ctx context.Context, r Room) error
	// DeleteRoom removes the room with the given alias, and its member list.
	DeleteRoom(ctx context.Context, alias string) error

	// AddRoomMember puts a user on a room's member list with role, or
	// changes the role of a user already on it.
	AddRoomMember(ctx context.Context, roomID, userID int64, role MemberRole) error
	// RemoveRoomMember takes a user off a room's member list.
	RemoveRoomMember(ctx context.Context, roomID, userID int64) error
	// RoomMembers returns a room's member list ordered by username.
	RoomMembers(ctx context.Context, roomID int64) ([]RoomMember, error)
	// RoomMemberRole returns a user's role on a room's member list;
	// ErrNotFound if the user is not on it.
	RoomMemberRole(ctx context.Context, roomID, userID int64) (MemberRole, error)

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
	// DeleteOtherUserSessions removes every session of a user but the one
	// whose ID hash is keep, and returns how many it removed.
	DeleteOtherUserSessions(ctx context.Context, userID int64, keep []byte) (int64, error)
	// DeleteExpiredSessions removes sessions whose absolute expiry is at or
	// before now and returns how many were removed.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error)
	// CountSessions returns the number of live sessions matching f.
	CountSessions(ctx context.Context, f SessionFilter) (int, error)
	// CreateSessionLimited stores s unless, counted in the same
	// transaction, some limit already has Max or more matching sessions;
	// then it returns a *SessionLimitError for the first such limit.
	CreateSessionLimited(ctx context.Context, s Session, limits []SessionLimit) error

	// ReplacePassword sets a user's password hash, PasswordChangedAt and
	// MustChangePassword in one transaction, moving the replaced hash (if
	// any) into the user's password history and trimming that history to
	// the newest c.KeepHistory hashes.
	ReplacePassword(ctx context.Context, id int64, c PasswordChange) error
	// PasswordHistory returns up to n retired password hashes of a user,
	// newest first. The current hash is not among them.
	PasswordHistory(ctx context.Context, id int64, n int) ([]string, error)
	// SetMustChangePassword sets or clears a user's MustChangePassword.
	SetMustChangePassword(ctx context.Context, id int64, must bool) error

	// LoginThrottle returns the throttle record of key.
	LoginThrottle(ctx context.Context, key string) (LoginThrottle, error)
	// UpdateLoginThrottle reads the record of key (the zero LoginThrottle
	// with Key set if there is none), passes it to fn and stores what fn
	// returns, all in one write transaction, so that concurrent attempts
	// are counted one after the other. A result with zero Failures,
	// NotBefore and LockedUntil deletes the record. fn must not call the
	// store. It returns the stored record.
	UpdateLoginThrottle(ctx context.Context, key string, fn func(LoginThrottle) LoginThrottle) (LoginThrottle, error)
	// DeleteLoginThrottle removes the record of key.
	DeleteLoginThrottle(ctx context.Context, key string) error
	// PruneLoginThrottles removes records whose last failure, delay and
	// lock all lie before before, and returns how many were removed.
	PruneLoginThrottles(ctx context.Context, before time.Time) (int64, error)

	// AppendAudit adds r at the end of the audit log and returns it with
	// its Seq, PrevHash and Hash set (any given values are ignored). The
	// hash chains the previous record's hash, see AuditRecord.
	AppendAudit(ctx context.Context, r AuditRecord) (AuditRecord, error)
	// ListAudit returns the audit records matching f.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
	// DeleteAuditBefore removes the audit records whose Seq is below seq
	// (those the audit files no longer keep, see package audit) and
	// returns how many it removed.
	DeleteAuditBefore(ctx context.Context, seq int64) (int64, error)

	// SetUserRoles replaces the management roles of a user (names, not
	// checked here) and sets Role to RoleAdmin when there is at least one,
	// RoleUser otherwise, in one transaction.
	SetUserRoles(ctx context.Context, id int64, roles []string) error
	// DeleteUser removes a user and, with it, its sessions, password
	// history, roles and room memberships; rooms it owned lose their owner,
	// and its device certificates their UserID (they stay, for the device
	// CA's revocation list).
	DeleteUser(ctx context.Context, id int64) error
	// UpdateUserIdentity sets a user's display name, source and external
	// ID, as a directory or single sign-on login finds them.
	UpdateUserIdentity(ctx context.Context, id int64, displayName, source, externalID string) error
	// UserByExternalID returns the user with the given source and external
	// ID.
	UserByExternalID(ctx context.Context, source, externalID string) (User, error)
	// CountRoleHolders returns how many users hold the role called name.
	CountRoleHolders(ctx context.Context, name string) (int, error)

	// CreateCustomRole stores a new custom role; ErrExists if the name is
	// taken.
	CreateCustomRole(ctx context.Context, r CustomRole) error
	// UpdateCustomRole replaces the description and permissions of the
	// custom role r.Name.
	UpdateCustomRole(ctx context.Context, r CustomRole) error
	// DeleteCustomRole removes a custom role; the caller checks first that
	// nobody holds it.
	DeleteCustomRole(ctx context.Context, name string) error
	// CustomRoles returns the custom roles ordered by name.
	CustomRoles(ctx context.Context) ([]CustomRole, error)

	// ListSessions returns the sessions matching f (live ones only when
	// f.Now is set), newest first.
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)

	// Setting returns the value stored under key; ErrNotFound if none.
	Setting(ctx context.Context, key string) (string, error)
	// SetSetting stores value under key.
	SetSetting(ctx context.Context, key, value string, now time.Time) error

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
