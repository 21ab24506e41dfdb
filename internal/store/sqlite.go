package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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

	// 3: management roles and permissions, directory and single sign-on
	// accounts, session planes and methods, settings. Existing
	// administrators get the built-in role of every permission.
	`ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
	ALTER TABLE users ADD COLUMN external_id TEXT NOT NULL DEFAULT '';
	CREATE INDEX users_external ON users (source, external_id);
	CREATE TABLE user_roles (
		user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		role    TEXT    NOT NULL,
		PRIMARY KEY (user_id, role)
	);
	CREATE INDEX user_roles_role ON user_roles (role);
	INSERT INTO user_roles (user_id, role) SELECT id, 'administrator' FROM users WHERE role = 'admin';
	CREATE TABLE custom_roles (
		name        TEXT    PRIMARY KEY,
		description TEXT    NOT NULL,
		permissions TEXT    NOT NULL,
		created_at  INTEGER NOT NULL,
		updated_at  INTEGER NOT NULL
	);
	ALTER TABLE sessions ADD COLUMN plane TEXT NOT NULL DEFAULT '';
	ALTER TABLE sessions ADD COLUMN method TEXT NOT NULL DEFAULT '';
	CREATE TABLE settings (
		key        TEXT    PRIMARY KEY,
		value      TEXT    NOT NULL,
		updated_at INTEGER NOT NULL
	);`,

	// 4: telephony (docs/sip.md): one-time device enrolment tokens, device
	// certificates issued by the registration authority with their
	// revocation state, and call detail records (encrypted by the caller).
	`CREATE TABLE device_tokens (
		token_hash BLOB    PRIMARY KEY,
		user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		created_by TEXT    NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		used_at    INTEGER
	);
	CREATE TABLE device_certs (
		serial      TEXT    PRIMARY KEY,
		user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		aor         TEXT    NOT NULL,
		fingerprint TEXT    NOT NULL,
		key_type    TEXT    NOT NULL,
		issued_at   INTEGER NOT NULL,
		not_after   INTEGER NOT NULL,
		revoked_at  INTEGER,
		reason      INTEGER NOT NULL DEFAULT 0,
		der         BLOB    NOT NULL
	);
	CREATE INDEX device_certs_user_id ON device_certs (user_id);
	CREATE INDEX device_certs_revoked ON device_certs (revoked_at);
	CREATE TABLE cdrs (
		id         TEXT    PRIMARY KEY,
		started_at INTEGER NOT NULL,
		sealed     BLOB    NOT NULL
	);
	CREATE INDEX cdrs_started_at ON cdrs (started_at);`,

	// 5: audit records sealed with the audit key (package audit): the
	// HMAC of each record's hash under a key kept apart from the database.
	`ALTER TABLE audit_log ADD COLUMN mac BLOB;`,

	// 6: conference nodes (docs/cluster.md): one-time enrolment tokens,
	// the enrolled nodes, and the node certificates issued to them.
	`CREATE TABLE node_tokens (
		token_hash BLOB    PRIMARY KEY,
		name       TEXT    NOT NULL,
		role       TEXT    NOT NULL,
		labels     TEXT    NOT NULL,
		created_by TEXT    NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		used_at    INTEGER
	);
	CREATE TABLE nodes (
		name        TEXT    PRIMARY KEY,
		role        TEXT    NOT NULL,
		labels      TEXT    NOT NULL,
		enrolled_at INTEGER NOT NULL,
		removed_at  INTEGER
	);
	CREATE TABLE node_certs (
		serial     TEXT    PRIMARY KEY,
		node       TEXT    NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
		issued_at  INTEGER NOT NULL,
		not_after  INTEGER NOT NULL,
		revoked_at INTEGER,
		der        BLOB    NOT NULL
	);
	CREATE INDEX node_certs_node ON node_certs (node, issued_at);`,

	// 7: the E2EE transparency log (docs/e2ee.md, section 13).
	`CREATE TABLE e2ee_log (
		idx    INTEGER PRIMARY KEY CHECK (idx >= 0),
		record BLOB    NOT NULL
	);`,

	// 8: the SIP digest secret of a device (its HA1 values), for the
	// optional second factor (docs/sip.md).
	`ALTER TABLE device_certs ADD COLUMN digest_ha1 TEXT NOT NULL DEFAULT '';`,

	// 9: device certificates outlive their account, so that the device
	// CA's CRL and OCSP responder keep telling the revocation of a
	// deleted account's devices: user_id is set to NULL instead of the
	// row being deleted. SQLite cannot change a foreign key in place,
	// so the table is rebuilt (nothing references it).
	`CREATE TABLE device_certs_v9 (
		serial      TEXT    PRIMARY KEY,
		user_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
		aor         TEXT    NOT NULL,
		fingerprint TEXT    NOT NULL,
		key_type    TEXT    NOT NULL,
		issued_at   INTEGER NOT NULL,
		not_after   INTEGER NOT NULL,
		revoked_at  INTEGER,
		reason      INTEGER NOT NULL DEFAULT 0,
		der         BLOB    NOT NULL,
		digest_ha1  TEXT    NOT NULL DEFAULT ''
	);
	INSERT INTO device_certs_v9 (serial, user_id, aor, fingerprint, key_type, issued_at, not_after, revoked_at, reason, der, digest_ha1)
		SELECT serial, user_id, aor, fingerprint, key_type, issued_at, not_after, revoked_at, reason, der, digest_ha1 FROM device_certs;
	DROP TABLE device_certs;
	ALTER TABLE device_certs_v9 RENAME TO device_certs;
	CREATE INDEX device_certs_user_id ON device_certs (user_id);
	CREATE INDEX device_certs_revoked ON device_certs (revoked_at);`,

	// 10: the audit log's search text (AuditRecord.searchText), so that a
	// text search finds the same records on both engines; existing
	// records get theirs from fillAuditSearch.
	`ALTER TABLE audit_log ADD COLUMN search TEXT NOT NULL DEFAULT '';`,
}

// migrationCode runs, in the transaction of the schema version it is
// keyed by and after its SQL, what SQL alone cannot do. Both engines run
// it.
var migrationCode = map[int]func(ctx context.Context, tx *sqlTx) error{
	10: fillAuditSearch,
}

// DB is the Store on a SQL database: an embedded SQLite file (OpenSQLite,
// the default) or a PostgreSQL server (OpenPostgres). Both run the same
// queries, written once with '?' placeholders, on the same schema history
// (migrations and pgMigrations, one entry per version in each).
//
// On SQLite, several DB values, in one process or several, may share a
// file: the database runs in WAL mode, write transactions take the write
// lock up front, and a connection waits up to 5 s for a busy lock. On
// PostgreSQL, write transactions take an advisory lock first, so that they
// run one after the other in the same way.
type DB struct {
	db *sqlDB
	// pgURL and where are the URL of a PostgreSQL database (for its
	// client programs, see Snapshot) and its description without the
	// password.
	pgURL, where string
}

// SQLite is DB's name from before PostgreSQL: the callers that open the
// embedded database still use it.
type SQLite = DB

var _ Store = (*DB)(nil)

// OpenSQLite opens (creating it if needed) the SQLite database file at path,
// normally filepath.Join(dataDir, DBFileName), and applies the migrations it
// has not seen yet. The path must name a file: an in-memory database would
// not be shared between the pool's connections.
func OpenSQLite(path string) (*DB, error) {
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
	pool, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db := &sqlDB{pool: pool, engine: engineSQLite}
	s := &DB{db: db}
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
func (s *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// migrate applies, each in its own transaction, the migrations not yet
// recorded in schema_migrations. The check runs inside the write
// transaction, so two processes opening the same new database cannot both
// apply a migration.
func (s *DB) migrate(ctx context.Context) error {
	list := migrations
	if s.db.engine == enginePostgres {
		list = pgMigrations
	}
	if len(pgMigrations) != len(migrations) {
		return fmt.Errorf("this program has %d SQLite migrations but %d PostgreSQL ones; every schema version needs both", len(migrations), len(pgMigrations))
	}
	if err := s.applyMigration(ctx, 0, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var latest int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&latest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest > len(list) {
		return fmt.Errorf("the database has schema version %d but this program knows only up to %d; run a newer Conclave", latest, len(list))
	}
	for i, m := range list {
		if err := s.applyMigration(ctx, i+1, m); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

// applyMigration applies schema version `version` (0: the bookkeeping
// table itself, not recorded) unless it is recorded already.
func (s *DB) applyMigration(ctx context.Context, version int, query string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if version == 0 {
		if _, err := tx.ExecContext(ctx, query); err != nil {
			return err
		}
		return tx.Commit()
	}
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
	if f := migrationCode[version]; f != nil {
		if err := f(ctx, tx); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
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
func (s *DB) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.db.engine, err)
	}
	return nil
}

// CreateUser implements Store.
func (s *DB) CreateUser(ctx context.Context, u User) (User, error) {
	if err := ValidUsername(u.Username); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	if !u.Role.Valid() {
		return User{}, fmt.Errorf("create user %s: unknown role %q", u.Username, u.Role)
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	if u.Source == "" {
		u.Source = SourceLocal
	}
	u.Roles = normalRoles(u.Roles)
	if u.Role == RoleAdmin && len(u.Roles) == 0 {
		u.Roles = []string{DefaultAdminRole}
	}
	u.Role = kindOf(u.Roles)
	u.CreatedAt = u.CreatedAt.UTC()
	u.PasswordChangedAt = u.PasswordChangedAt.UTC()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Username, err)
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, `INSERT INTO users
		(username, display_name, password_hash, role, enabled, created_at, password_changed_at, must_change_password, source, external_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Username, u.DisplayName, u.PasswordHash, string(u.Role), u.Enabled,
		toNanos(u.CreatedAt), toNullNanos(u.PasswordChangedAt), u.MustChangePassword, u.Source, u.ExternalID).Scan(&u.ID)
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Username, mapErr(err))
	}
	if err := insertRoles(ctx, tx, u.ID, u.Roles); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Username, err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Username, err)
	}
	return u, nil
}

const userColumns = `id, username, display_name, password_hash, role, enabled, created_at, password_changed_at, must_change_password,
	source, external_id, (SELECT COALESCE(string_agg(role, ',' ORDER BY role), '') FROM user_roles WHERE user_id = users.id)`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var (
		u         User
		role      string
		created   int64
		pwChanged sql.NullInt64
		roles     string
	)
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &role, &u.Enabled, &created, &pwChanged, &u.MustChangePassword,
		&u.Source, &u.ExternalID, &roles); err != nil {
		return User{}, mapErr(err)
	}
	u.Role = Role(role)
	if roles != "" {
		u.Roles = strings.Split(roles, ",")
	}
	u.CreatedAt = fromNanos(created)
	u.PasswordChangedAt = fromNullNanos(pwChanged)
	return u, nil
}

// UserByID implements Store.
func (s *DB) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if err != nil {
		return User{}, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

// UserByName implements Store.
func (s *DB) UserByName(ctx context.Context, username string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", username, err)
	}
	return u, nil
}

// ListUsers implements Store.
func (s *DB) ListUsers(ctx context.Context) ([]User, error) {
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
func (s *DB) SetPassword(ctx context.Context, id int64, hash string, changedAt time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?`,
		hash, toNullNanos(changedAt), id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("set password of user %d: %w", id, err)
	}
	return nil
}

// SetUserEnabled implements Store.
func (s *DB) SetUserEnabled(ctx context.Context, id int64, enabled bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET enabled = ? WHERE id = ?`, enabled, id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("set enabled of user %d: %w", id, err)
	}
	return nil
}

// CountUsers implements Store.
func (s *DB) CountUsers(ctx context.Context, role Role) (int, error) {
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
func (s *DB) CreateRoom(ctx context.Context, r Room) (Room, error) {
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
	err := s.db.QueryRowContext(ctx, `INSERT INTO rooms (alias, display_name, owner_id, created_at,
		access, host_pin_hash, guest_pin_hash, allow_guests, guests_may_unmute, guests_may_present, members_only)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.Alias, r.DisplayName, owner, toNanos(r.CreatedAt),
		string(r.Access), r.HostPINHash, r.GuestPINHash, r.AllowGuests, r.GuestsMayUnmute, r.GuestsMayPresent, r.MembersOnly).Scan(&r.ID)
	if err != nil {
		return Room{}, fmt.Errorf("create room %s: %w", r.Alias, mapErr(err))
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
func (s *DB) RoomByAlias(ctx context.Context, alias string) (Room, error) {
	r, err := scanRoom(s.db.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM rooms WHERE alias = ?`, alias))
	if err != nil {
		return Room{}, fmt.Errorf("room %q: %w", alias, err)
	}
	return r, nil
}

// ListRooms implements Store.
func (s *DB) ListRooms(ctx context.Context) ([]Room, error) {
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
func (s *DB) DeleteRoom(ctx context.Context, alias string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM rooms WHERE alias = ?`, alias)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete room %q: %w", alias, err)
	}
	return nil
}

// CreateEnrolment implements Store.
func (s *DB) CreateEnrolment(ctx context.Context, e Enrolment) error {
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
func (s *DB) EnrolmentByHash(ctx context.Context, tokenHash []byte) (Enrolment, error) {
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
func (s *DB) ConsumeEnrolment(ctx context.Context, tokenHash []byte, now time.Time) (Enrolment, error) {
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
func (s *DB) CreateSession(ctx context.Context, ss Session) error {
	if len(ss.IDHash) == 0 {
		return errors.New("create session: empty ID hash")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions
		(id_hash, user_id, created_at, last_seen, expires_at, csrf_token, remote, plane, method)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ss.IDHash, ss.UserID, toNanos(ss.CreatedAt), toNanos(ss.LastSeen), toNanos(ss.ExpiresAt), ss.CSRFToken, ss.Remote, ss.Plane, ss.Method)
	if err != nil {
		return fmt.Errorf("create session for user %d: %w", ss.UserID, mapErr(err))
	}
	return nil
}

// SessionByID implements Store.
func (s *DB) SessionByID(ctx context.Context, idHash []byte) (Session, error) {
	ss, err := scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions s WHERE id_hash = ?`, idHash))
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	return ss, nil
}

// TouchSession implements Store.
func (s *DB) TouchSession(ctx context.Context, idHash []byte, lastSeen time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ?`, toNanos(lastSeen), idHash)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession implements Store.
func (s *DB) DeleteSession(ctx context.Context, idHash []byte) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions implements Store.
func (s *DB) DeleteUserSessions(ctx context.Context, userID int64) (int64, error) {
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
func (s *DB) DeleteOtherUserSessions(ctx context.Context, userID int64, keep []byte) (int64, error) {
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
func (s *DB) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
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
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return ErrExists
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
