package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DBFileName is the name of the SQLite database file inside the data
// directory.
const DBFileName = "conclave.db"

// busyTimeoutMS is how long a connection waits for another connection (or
// another process, such as the CLI next to a running server) to release a
// lock before failing with SQLITE_BUSY.
const busyTimeoutMS = 5000

// migrations is the ordered schema history. Entry i is schema version i+1.
// Never edit or reorder an entry that has shipped: append a new one.
var migrations = []string{
	// 1: users, rooms, enrolments, sessions.
	`CREATE TABLE users (
		id                  INTEGER PRIMARY KEY,
		username            TEXT    NOT NULL UNIQUE COLLATE NOCASE,
		display_name        TEXT    NOT NULL,
		password_hash       TEXT    NOT NULL,
		role                TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
		enabled             INTEGER NOT NULL CHECK (enabled IN (0, 1)),
		created_at          INTEGER NOT NULL,
		password_changed_at INTEGER
	);
	CREATE TABLE rooms (
		id           INTEGER PRIMARY KEY,
		alias        TEXT    NOT NULL UNIQUE COLLATE NOCASE,
		display_name TEXT    NOT NULL,
		owner_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
		created_at   INTEGER NOT NULL
	);
	CREATE TABLE enrolments (
		token_hash BLOB    PRIMARY KEY,
		role       TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		used_at    INTEGER
	);
	CREATE TABLE sessions (
		id_hash    BLOB    PRIMARY KEY,
		user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		csrf_token TEXT    NOT NULL,
		remote     TEXT    NOT NULL
	);
	CREATE INDEX sessions_user_id ON sessions (user_id);
	CREATE INDEX sessions_expires_at ON sessions (expires_at);`,

	// 2: access control: forced password change, password history, login
	// throttling, audit log, room access settings and member lists.
	// Existing rooms become open rooms, as they behaved until now.
	`ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1));
	CREATE TABLE password_history (
		id         INTEGER PRIMARY KEY,
		user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		hash       TEXT    NOT NULL,
		retired_at INTEGER NOT NULL
	);
	CREATE INDEX password_history_user_id ON password_history (user_id, id);
	CREATE TABLE login_throttle (
		key          TEXT    PRIMARY KEY,
		failures     INTEGER NOT NULL,
		last_failure INTEGER NOT NULL,
		not_before   INTEGER NOT NULL,
		locked_until INTEGER NOT NULL
	);
	CREATE TABLE audit_log (
		seq       INTEGER PRIMARY KEY,
		time      INTEGER NOT NULL,
		actor     TEXT    NOT NULL,
		source    TEXT    NOT NULL,
		action    TEXT    NOT NULL,
		target    TEXT    NOT NULL,
		outcome   TEXT    NOT NULL,
		details   TEXT    NOT NULL,
		prev_hash BLOB    NOT NULL,
		hash      BLOB    NOT NULL
	);
	CREATE INDEX audit_log_time ON audit_log (time);
	CREATE INDEX audit_log_action ON audit_log (action, seq);
	ALTER TABLE rooms ADD COLUMN access TEXT NOT NULL DEFAULT 'open' CHECK (access IN ('open', 'pin', 'accounts'));
	ALTER TABLE rooms ADD COLUMN host_pin_hash TEXT NOT NULL DEFAULT '';
	ALTER TABLE rooms ADD COLUMN guest_pin_hash TEXT NOT NULL DEFAULT '';
	ALTER TABLE rooms ADD COLUMN allow_guests INTEGER NOT NULL DEFAULT 1 CHECK (allow_guests IN (0, 1));
	ALTER TABLE rooms ADD COLUMN guests_may_unmute INTEGER NOT NULL DEFAULT 1 CHECK (guests_may_unmute IN (0, 1));
	ALTER TABLE rooms ADD COLUMN guests_may_present INTEGER NOT NULL DEFAULT 1 CHECK (guests_may_present IN (0, 1));
	ALTER TABLE rooms ADD COLUMN members_only INTEGER NOT NULL DEFAULT 0 CHECK (members_only IN (0, 1));
	CREATE TABLE room_members (
		room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
		user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		role    TEXT    NOT NULL CHECK (role IN ('host', 'member')),
		PRIMARY KEY (room_id, user_id)
	);
	CREATE INDEX room_members_user_id ON room_members (user_id);`,
}

// SQLite is the Store on an embedded SQLite database (modernc.org/sqlite, no
// cgo). Several SQLite values, in one process or several, may share a file:
// the database runs in WAL mode, write transactions take the write lock up
// front, and a connection waits up to 5 s for a busy lock.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating it if needed) the SQLite database file at path,
// normally filepath.Join(dataDir, DBFileName), and applies the migrations it
// has not seen yet. The path must name a file: an in-memory database would
// not be shared between the pool's connections.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("open sqlite: the database path is empty")
	}
	if path == ":memory:" {
		return nil, errors.New("open sqlite: an in-memory database is not supported; give a file path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite %s: the database path must not contain '?' or '#'", path)
	}
	dsn := path + "?_txlock=immediate" +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeoutMS) +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	s := &SQLite{db: db}
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return s, nil
}

// SchemaVersion returns the highest migration applied to the database.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// migrate applies, each in its own transaction, the migrations not yet
// recorded in schema_migrations. The check runs inside the (immediate) write
// transaction, so two processes opening the same new file cannot both apply
// a migration.
func (s *SQLite) migrate(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for i, m := range migrations {
		if err := s.applyMigration(ctx, i+1, m); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	var latest int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&latest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest > len(migrations) {
		return fmt.Errorf("the database has schema version %d but this program knows only up to %d; run a newer Conclave", latest, len(migrations))
	}
	return nil
}

func (s *SQLite) applyMigration(ctx context.Context, version int, query string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, query); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		version, time.Now().UTC().UnixNano()); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close sqlite: %w", err)
	}
	return nil
}

// CreateUser implements Store.
func (s *SQLite) CreateUser(ctx context.Context, u User) (User, error) {
	if err := ValidUsername(u.Username); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	if !u.Role.Valid() {
		return User{}, fmt.Errorf("create user %s: unknown role %q", u.Username, u.Role)
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	u.CreatedAt = u.CreatedAt.UTC()
	u.PasswordChangedAt = u.PasswordChangedAt.UTC()
	res, err := s.db.ExecContext(ctx, `INSERT INTO users
		(username, display_name, password_hash, role, enabled, created_at, password_changed_at, must_change_password)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		u.Username, u.DisplayName, u.PasswordHash, string(u.Role), u.Enabled,
		toNanos(u.CreatedAt), toNullNanos(u.PasswordChangedAt), u.MustChangePassword)
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Username, mapErr(err))
	}
	if u.ID, err = res.LastInsertId(); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Username, err)
	}
	return u, nil
}

const userColumns = `id, username, display_name, password_hash, role, enabled, created_at, password_changed_at, must_change_password`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var (
		u         User
		role      string
		created   int64
		pwChanged sql.NullInt64
	)
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &role, &u.Enabled, &created, &pwChanged, &u.MustChangePassword); err != nil {
		return User{}, mapErr(err)
	}
	u.Role = Role(role)
	u.CreatedAt = fromNanos(created)
	u.PasswordChangedAt = fromNullNanos(pwChanged)
	return u, nil
}

// UserByID implements Store.
func (s *SQLite) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if err != nil {
		return User{}, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

// UserByName implements Store.
func (s *SQLite) UserByName(ctx context.Context, username string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", username, err)
	}
	return u, nil
}

// ListUsers implements Store.
func (s *SQLite) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username, id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var users []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// SetPassword implements Store.
func (s *SQLite) SetPassword(ctx context.Context, id int64, hash string, changedAt time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?`,
		hash, toNullNanos(changedAt), id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("set password of user %d: %w", id, err)
	}
	return nil
}

// SetUserEnabled implements Store.
func (s *SQLite) SetUserEnabled(ctx context.Context, id int64, enabled bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET enabled = ? WHERE id = ?`, enabled, id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("set enabled of user %d: %w", id, err)
	}
	return nil
}

// CountUsers implements Store.
func (s *SQLite) CountUsers(ctx context.Context, role Role) (int, error) {
	var n int
	var err error
	if role == "" {
		err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	} else {
		err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE role = ?`, string(role)).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// CreateRoom implements Store.
func (s *SQLite) CreateRoom(ctx context.Context, r Room) (Room, error) {
	r.Alias = strings.ToLower(r.Alias)
	if err := ValidAlias(r.Alias); err != nil {
		return Room{}, fmt.Errorf("create room: %w", err)
	}
	if r.Access == "" {
		if r.HostPINHash != "" || r.GuestPINHash != "" {
			return Room{}, fmt.Errorf("create room %s: PINs are given but no access mode; choose pin or accounts", r.Alias)
		}
		r = DefaultRoomAccess(r)
	}
	if err := checkAccess(r); err != nil {
		return Room{}, fmt.Errorf("create room %s: %w", r.Alias, err)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	r.CreatedAt = r.CreatedAt.UTC()
	var owner sql.NullInt64
	if r.OwnerID != 0 {
		owner = sql.NullInt64{Int64: r.OwnerID, Valid: true}
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO rooms (alias, display_name, owner_id, created_at,
		access, host_pin_hash, guest_pin_hash, allow_guests, guests_may_unmute, guests_may_present, members_only)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Alias, r.DisplayName, owner, toNanos(r.CreatedAt),
		string(r.Access), r.HostPINHash, r.GuestPINHash, r.AllowGuests, r.GuestsMayUnmute, r.GuestsMayPresent, r.MembersOnly)
	if err != nil {
		return Room{}, fmt.Errorf("create room %s: %w", r.Alias, mapErr(err))
	}
	if r.ID, err = res.LastInsertId(); err != nil {
		return Room{}, fmt.Errorf("create room %s: %w", r.Alias, err)
	}
	return r, nil
}

const roomColumns = `id, alias, display_name, owner_id, created_at,
	access, host_pin_hash, guest_pin_hash, allow_guests, guests_may_unmute, guests_may_present, members_only`

func scanRoom(row interface{ Scan(...any) error }) (Room, error) {
	var (
		r       Room
		owner   sql.NullInt64
		created int64
		access  string
	)
	if err := row.Scan(&r.ID, &r.Alias, &r.DisplayName, &owner, &created,
		&access, &r.HostPINHash, &r.GuestPINHash, &r.AllowGuests, &r.GuestsMayUnmute, &r.GuestsMayPresent, &r.MembersOnly); err != nil {
		return Room{}, mapErr(err)
	}
	r.Access = Access(access)
	r.OwnerID = owner.Int64
	r.CreatedAt = fromNanos(created)
	return r, nil
}

// RoomByAlias implements Store.
func (s *SQLite) RoomByAlias(ctx context.Context, alias string) (Room, error) {
	r, err := scanRoom(s.db.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM rooms WHERE alias = ?`, alias))
	if err != nil {
		return Room{}, fmt.Errorf("room %q: %w", alias, err)
	}
	return r, nil
}

// ListRooms implements Store.
func (s *SQLite) ListRooms(ctx context.Context) ([]Room, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+roomColumns+` FROM rooms ORDER BY alias, id`)
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	var rooms []Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fmt.Errorf("list rooms: %w", err)
		}
		rooms = append(rooms, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return rooms, nil
}

// DeleteRoom implements Store.
func (s *SQLite) DeleteRoom(ctx context.Context, alias string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM rooms WHERE alias = ?`, alias)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete room %q: %w", alias, err)
	}
	return nil
}

// CreateEnrolment implements Store.
func (s *SQLite) CreateEnrolment(ctx context.Context, e Enrolment) error {
	if len(e.TokenHash) == 0 {
		return errors.New("create enrolment: empty token hash")
	}
	if !e.Role.Valid() {
		return fmt.Errorf("create enrolment: unknown role %q", e.Role)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO enrolments (token_hash, role, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?)`,
		e.TokenHash, string(e.Role), toNanos(e.CreatedAt), toNanos(e.ExpiresAt), toNullNanos(e.UsedAt))
	if err != nil {
		return fmt.Errorf("create enrolment: %w", mapErr(err))
	}
	return nil
}

// EnrolmentByHash implements Store.
func (s *SQLite) EnrolmentByHash(ctx context.Context, tokenHash []byte) (Enrolment, error) {
	e, err := scanEnrolment(s.db.QueryRowContext(ctx, `SELECT `+enrolmentColumns+` FROM enrolments WHERE token_hash = ?`, tokenHash))
	if err != nil {
		return Enrolment{}, fmt.Errorf("enrolment: %w", err)
	}
	return e, nil
}

const enrolmentColumns = `token_hash, role, created_at, expires_at, used_at`

func scanEnrolment(row interface{ Scan(...any) error }) (Enrolment, error) {
	var (
		e                Enrolment
		role             string
		created, expires int64
		usedAt           sql.NullInt64
	)
	if err := row.Scan(&e.TokenHash, &role, &created, &expires, &usedAt); err != nil {
		return Enrolment{}, mapErr(err)
	}
	e.Role = Role(role)
	e.CreatedAt = fromNanos(created)
	e.ExpiresAt = fromNanos(expires)
	e.UsedAt = fromNullNanos(usedAt)
	return e, nil
}

// ConsumeEnrolment implements Store. The check and the update are one
// statement, so two concurrent redemptions cannot both succeed.
func (s *SQLite) ConsumeEnrolment(ctx context.Context, tokenHash []byte, now time.Time) (Enrolment, error) {
	n := toNanos(now)
	e, err := scanEnrolment(s.db.QueryRowContext(ctx, `UPDATE enrolments SET used_at = ?
		WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?
		RETURNING `+enrolmentColumns, n, tokenHash, n))
	if err != nil {
		return Enrolment{}, fmt.Errorf("consume enrolment: %w", err)
	}
	return e, nil
}

// CreateSession implements Store.
func (s *SQLite) CreateSession(ctx context.Context, ss Session) error {
	if len(ss.IDHash) == 0 {
		return errors.New("create session: empty ID hash")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions
		(id_hash, user_id, created_at, last_seen, expires_at, csrf_token, remote)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		ss.IDHash, ss.UserID, toNanos(ss.CreatedAt), toNanos(ss.LastSeen), toNanos(ss.ExpiresAt), ss.CSRFToken, ss.Remote)
	if err != nil {
		return fmt.Errorf("create session for user %d: %w", ss.UserID, mapErr(err))
	}
	return nil
}

// SessionByID implements Store.
func (s *SQLite) SessionByID(ctx context.Context, idHash []byte) (Session, error) {
	var (
		ss                         Session
		created, lastSeen, expires int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT id_hash, user_id, created_at, last_seen, expires_at, csrf_token, remote
		FROM sessions WHERE id_hash = ?`, idHash).
		Scan(&ss.IDHash, &ss.UserID, &created, &lastSeen, &expires, &ss.CSRFToken, &ss.Remote)
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", mapErr(err))
	}
	ss.CreatedAt = fromNanos(created)
	ss.LastSeen = fromNanos(lastSeen)
	ss.ExpiresAt = fromNanos(expires)
	return ss, nil
}

// TouchSession implements Store.
func (s *SQLite) TouchSession(ctx context.Context, idHash []byte, lastSeen time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ?`, toNanos(lastSeen), idHash)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession implements Store.
func (s *SQLite) DeleteSession(ctx context.Context, idHash []byte) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions implements Store.
func (s *SQLite) DeleteUserSessions(ctx context.Context, userID int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
	if err != nil {
		return 0, fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// DeleteOtherUserSessions implements Store.
func (s *SQLite) DeleteOtherUserSessions(ctx context.Context, userID int64, keep []byte) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND id_hash <> ?`, userID, keep)
	if err != nil {
		return 0, fmt.Errorf("delete other sessions of user %d: %w", userID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete other sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// DeleteExpiredSessions implements Store.
func (s *SQLite) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, toNanos(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return n, nil
}

// checkOne turns the result of a statement that must touch exactly one row
// into an error: the statement's own, or ErrNotFound when no row matched.
func checkOne(res sql.Result, err error) error {
	if err != nil {
		return mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// mapErr translates driver errors into the package's sentinel errors, keeping
// the original message.
func mapErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return ErrExists
		}
	}
	return err
}

// Times are stored as INTEGER nanoseconds since the Unix epoch, UTC. NULL
// (or, for NOT NULL columns, the zero time's absence) means "not set".

func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func toNullNanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}
