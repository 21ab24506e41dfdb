package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RoomByID implements Store.
func (s *DB) RoomByID(ctx context.Context, id int64) (Room, error) {
	r, err := scanRoom(s.db.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM rooms WHERE id = ?`, id))
	if err != nil {
		return Room{}, fmt.Errorf("room %d: %w", id, err)
	}
	return r, nil
}

// UpdateRoom implements Store.
func (s *DB) UpdateRoom(ctx context.Context, r Room) error {
	if err := checkAccess(r); err != nil {
		return fmt.Errorf("update room %d: %w", r.ID, err)
	}
	var owner sql.NullInt64
	if r.OwnerID != 0 {
		owner = sql.NullInt64{Int64: r.OwnerID, Valid: true}
	}
	res, err := s.db.ExecContext(ctx, `UPDATE rooms SET display_name = ?, owner_id = ?,
		access = ?, host_pin_hash = ?, guest_pin_hash = ?, allow_guests = ?,
		guests_may_unmute = ?, guests_may_present = ?, members_only = ?
		WHERE id = ?`,
		r.DisplayName, owner, string(r.Access), r.HostPINHash, r.GuestPINHash, r.AllowGuests,
		r.GuestsMayUnmute, r.GuestsMayPresent, r.MembersOnly, r.ID)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("update room %d: %w", r.ID, err)
	}
	return nil
}

// AddRoomMember implements Store.
func (s *DB) AddRoomMember(ctx context.Context, roomID, userID int64, role MemberRole) error {
	if !role.Valid() {
		return fmt.Errorf("add member %d to room %d: unknown role %q", userID, roomID, role)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add member %d to room %d: %w", userID, roomID, err)
	}
	defer tx.Rollback()
	// Check both exist, so that a missing one gives ErrNotFound rather
	// than a foreign key failure.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM rooms WHERE id = ?) + (SELECT COUNT(*) FROM users WHERE id = ?)`,
		roomID, userID).Scan(&n); err != nil {
		return fmt.Errorf("add member %d to room %d: %w", userID, roomID, err)
	}
	if n != 2 {
		return fmt.Errorf("add member %d to room %d: %w", userID, roomID, ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO room_members (room_id, user_id, role) VALUES (?, ?, ?)
		ON CONFLICT (room_id, user_id) DO UPDATE SET role = excluded.role`, roomID, userID, string(role)); err != nil {
		return fmt.Errorf("add member %d to room %d: %w", userID, roomID, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add member %d to room %d: %w", userID, roomID, err)
	}
	return nil
}

// RemoveRoomMember implements Store.
func (s *DB) RemoveRoomMember(ctx context.Context, roomID, userID int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM room_members WHERE room_id = ? AND user_id = ?`, roomID, userID)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("remove member %d from room %d: %w", userID, roomID, err)
	}
	return nil
}

// RoomMembers implements Store.
func (s *DB) RoomMembers(ctx context.Context, roomID int64) ([]RoomMember, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT m.room_id, m.user_id, u.username, m.role
		FROM room_members m JOIN users u ON u.id = m.user_id
		WHERE m.room_id = ? ORDER BY u.username, u.id`, roomID)
	if err != nil {
		return nil, fmt.Errorf("members of room %d: %w", roomID, err)
	}
	defer rows.Close()
	var ms []RoomMember
	for rows.Next() {
		var m RoomMember
		var role string
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Username, &role); err != nil {
			return nil, fmt.Errorf("members of room %d: %w", roomID, err)
		}
		m.Role = MemberRole(role)
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("members of room %d: %w", roomID, err)
	}
	return ms, nil
}

// RoomMemberRole implements Store.
func (s *DB) RoomMemberRole(ctx context.Context, roomID, userID int64) (MemberRole, error) {
	var role string
	err := s.db.QueryRowContext(ctx, `SELECT role FROM room_members WHERE room_id = ? AND user_id = ?`, roomID, userID).Scan(&role)
	if err != nil {
		return "", fmt.Errorf("member %d of room %d: %w", userID, roomID, mapErr(err))
	}
	return MemberRole(role), nil
}

// sessionWhere returns the WHERE clause and arguments selecting the live
// sessions (table alias s, users alias u) matching f.
func sessionWhere(f SessionFilter) (string, []any) {
	conds := []string{"s.expires_at > ?"}
	args := []any{toNanos(f.Now)}
	if !f.IdleAfter.IsZero() {
		conds = append(conds, "s.last_seen > ?")
		args = append(args, toNanos(f.IdleAfter))
	}
	if f.UserID != 0 {
		conds = append(conds, "s.user_id = ?")
		args = append(args, f.UserID)
	}
	if f.Role != "" {
		conds = append(conds, "u.role = ?")
		args = append(args, string(f.Role))
	}
	return strings.Join(conds, " AND "), args
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func countSessions(ctx context.Context, q queryer, f SessionFilter) (int, error) {
	where, args := sessionWhere(f)
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE `+where, args...).Scan(&n)
	return n, err
}

// CountSessions implements Store.
func (s *DB) CountSessions(ctx context.Context, f SessionFilter) (int, error) {
	n, err := countSessions(ctx, s.db, f)
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// CreateSessionLimited implements Store.
func (s *DB) CreateSessionLimited(ctx context.Context, ss Session, limits []SessionLimit) error {
	if len(ss.IDHash) == 0 {
		return errors.New("create session: empty ID hash")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create session for user %d: %w", ss.UserID, err)
	}
	defer tx.Rollback()
	for _, l := range limits {
		n, err := countSessions(ctx, tx, l.Filter)
		if err != nil {
			return fmt.Errorf("create session for user %d: count: %w", ss.UserID, err)
		}
		if n >= l.Max {
			return fmt.Errorf("create session for user %d: %w", ss.UserID, &SessionLimitError{Limit: l, Count: n})
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO sessions
		(id_hash, user_id, created_at, last_seen, expires_at, csrf_token, remote, plane, method)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ss.IDHash, ss.UserID, toNanos(ss.CreatedAt), toNanos(ss.LastSeen), toNanos(ss.ExpiresAt), ss.CSRFToken, ss.Remote, ss.Plane, ss.Method)
	if err != nil {
		return fmt.Errorf("create session for user %d: %w", ss.UserID, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create session for user %d: %w", ss.UserID, err)
	}
	return nil
}

// ReplacePassword implements Store.
func (s *DB) ReplacePassword(ctx context.Context, id int64, c PasswordChange) error {
	if c.Hash == "" {
		return fmt.Errorf("replace password of user %d: empty hash", id)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("replace password of user %d: %w", id, err)
	}
	defer tx.Rollback()
	var old string
	if err := tx.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, id).Scan(&old); err != nil {
		return fmt.Errorf("replace password of user %d: %w", id, mapErr(err))
	}
	if old != "" && c.KeepHistory > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO password_history (user_id, hash, retired_at) VALUES (?, ?, ?)`,
			id, old, toNanos(c.ChangedAt)); err != nil {
			return fmt.Errorf("replace password of user %d: history: %w", id, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM password_history WHERE user_id = ? AND id NOT IN
		(SELECT id FROM password_history WHERE user_id = ? ORDER BY id DESC LIMIT ?)`,
		id, id, max(c.KeepHistory, 0)); err != nil {
		return fmt.Errorf("replace password of user %d: trim history: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?, password_changed_at = ?, must_change_password = ? WHERE id = ?`,
		c.Hash, toNullNanos(c.ChangedAt), c.MustChange, id); err != nil {
		return fmt.Errorf("replace password of user %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("replace password of user %d: %w", id, err)
	}
	return nil
}

// PasswordHistory implements Store.
func (s *DB) PasswordHistory(ctx context.Context, id int64, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT hash FROM password_history WHERE user_id = ? ORDER BY id DESC LIMIT ?`, id, n)
	if err != nil {
		return nil, fmt.Errorf("password history of user %d: %w", id, err)
	}
	defer rows.Close()
	var hashes []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("password history of user %d: %w", id, err)
		}
		hashes = append(hashes, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("password history of user %d: %w", id, err)
	}
	return hashes, nil
}

// SetMustChangePassword implements Store.
func (s *DB) SetMustChangePassword(ctx context.Context, id int64, must bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET must_change_password = ? WHERE id = ?`, must, id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("set must-change-password of user %d: %w", id, err)
	}
	return nil
}

const throttleColumns = `key, failures, last_failure, not_before, locked_until`

func scanThrottle(row interface{ Scan(...any) error }) (LoginThrottle, error) {
	var (
		t                    LoginThrottle
		last, notBef, locked int64
	)
	if err := row.Scan(&t.Key, &t.Failures, &last, &notBef, &locked); err != nil {
		return LoginThrottle{}, mapErr(err)
	}
	t.LastFailure, t.NotBefore, t.LockedUntil = fromNanos(last), fromNanos(notBef), fromNanos(locked)
	return t, nil
}

// LoginThrottle implements Store.
func (s *DB) LoginThrottle(ctx context.Context, key string) (LoginThrottle, error) {
	t, err := scanThrottle(s.db.QueryRowContext(ctx, `SELECT `+throttleColumns+` FROM login_throttle WHERE key = ?`, key))
	if err != nil {
		return LoginThrottle{}, fmt.Errorf("login throttle: %w", err)
	}
	return t, nil
}

// UpdateLoginThrottle implements Store.
func (s *DB) UpdateLoginThrottle(ctx context.Context, key string, fn func(LoginThrottle) LoginThrottle) (LoginThrottle, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return LoginThrottle{}, fmt.Errorf("update login throttle: %w", err)
	}
	defer tx.Rollback()
	cur, err := scanThrottle(tx.QueryRowContext(ctx, `SELECT `+throttleColumns+` FROM login_throttle WHERE key = ?`, key))
	if errors.Is(err, ErrNotFound) {
		cur, err = LoginThrottle{Key: key}, nil
	}
	if err != nil {
		return LoginThrottle{}, fmt.Errorf("update login throttle: %w", err)
	}
	next := fn(cur)
	next.Key = key
	if next.Failures == 0 && next.NotBefore.IsZero() && next.LockedUntil.IsZero() {
		_, err = tx.ExecContext(ctx, `DELETE FROM login_throttle WHERE key = ?`, key)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO login_throttle (`+throttleColumns+`) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, last_failure = excluded.last_failure,
			not_before = excluded.not_before, locked_until = excluded.locked_until`,
			key, next.Failures, toNanos(next.LastFailure), toNanos(next.NotBefore), toNanos(next.LockedUntil))
	}
	if err != nil {
		return LoginThrottle{}, fmt.Errorf("update login throttle: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return LoginThrottle{}, fmt.Errorf("update login throttle: %w", err)
	}
	return next, nil
}

// DeleteLoginThrottle implements Store.
func (s *DB) DeleteLoginThrottle(ctx context.Context, key string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM login_throttle WHERE key = ?`, key)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete login throttle: %w", err)
	}
	return nil
}

// PruneLoginThrottles implements Store.
func (s *DB) PruneLoginThrottles(ctx context.Context, before time.Time) (int64, error) {
	b := toNanos(before)
	res, err := s.db.ExecContext(ctx, `DELETE FROM login_throttle WHERE last_failure < ? AND not_before < ? AND locked_until < ?`, b, b, b)
	if err != nil {
		return 0, fmt.Errorf("prune login throttles: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune login throttles: %w", err)
	}
	return n, nil
}

// AppendAudit implements Store. The write transaction serialises appends,
// from this process or another, so the chain has no forks.
func (s *DB) AppendAudit(ctx context.Context, r AuditRecord) (AuditRecord, error) {
	if r.Action == "" {
		return AuditRecord{}, errors.New("append audit: empty action")
	}
	r.Time = r.Time.UTC()
	r.detailsJSON = encodeDetails(r.Details)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return AuditRecord{}, fmt.Errorf("append audit: %w", err)
	}
	defer tx.Rollback()
	var (
		lastSeq  int64
		lastHash []byte
	)
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		lastSeq, lastHash = 0, AuditGenesis
	case err != nil:
		return AuditRecord{}, fmt.Errorf("append audit: read last record: %w", err)
	}
	r.Seq = lastSeq + 1
	r.PrevHash = lastHash
	r.Hash = r.ComputeHash()
	r.MAC = nil
	if r.Seal != nil {
		r.MAC = r.Seal(r.Hash)
	}
	r.Seal = nil
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log
		(seq, time, actor, source, action, target, outcome, details, prev_hash, hash, mac, search)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Seq, toNanos(r.Time), r.Actor, r.Source, r.Action, r.Target, r.Outcome, r.detailsJSON, r.PrevHash, r.Hash, r.MAC, r.searchText()); err != nil {
		return AuditRecord{}, fmt.Errorf("append audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return AuditRecord{}, fmt.Errorf("append audit: %w", err)
	}
	return r, nil
}

// ListAudit implements Store. A record whose details column does not decode
// is returned with nil Details (its hash then no longer matches).
func (s *DB) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	var (
		conds []string
		args  []any
	)
	if f.Action != "" {
		conds = append(conds, "action = ?")
		args = append(args, f.Action)
	}
	if !f.Since.IsZero() {
		conds = append(conds, "time >= ?")
		args = append(args, toNanos(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "time < ?")
		args = append(args, toNanos(f.Until))
	}
	if f.AfterSeq > 0 {
		conds = append(conds, "seq > ?")
		args = append(args, f.AfterSeq)
	}
	if f.BeforeSeq > 0 {
		conds = append(conds, "seq < ?")
		args = append(args, f.BeforeSeq)
	}
	for _, c := range []struct{ col, v string }{{"actor", f.Actor}, {"outcome", f.Outcome}, {"source", f.Source}, {"target", f.Target}} {
		if c.v != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if f.Text != "" {
		conds = append(conds, `search LIKE ? ESCAPE '\'`)
		args = append(args, searchPattern(f.Text))
	}
	q := `SELECT seq, time, actor, source, action, target, outcome, details, prev_hash, hash, mac FROM audit_log`
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	if f.Newest {
		q += " ORDER BY seq DESC"
	} else {
		q += " ORDER BY seq"
	}
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var recs []AuditRecord
	for rows.Next() {
		var (
			r  AuditRecord
			tm int64
		)
		if err := rows.Scan(&r.Seq, &tm, &r.Actor, &r.Source, &r.Action, &r.Target, &r.Outcome, &r.detailsJSON, &r.PrevHash, &r.Hash, &r.MAC); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		r.Time = fromNanos(tm)
		if err := json.Unmarshal([]byte(r.detailsJSON), &r.Details); err != nil {
			r.Details = nil
		}
		if len(r.Details) == 0 {
			r.Details = nil
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return recs, nil
}

// DeleteAuditBefore implements Store.
func (s *SQLite) DeleteAuditBefore(ctx context.Context, seq int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM audit_log WHERE seq < ?`, seq)
	if err != nil {
		return 0, fmt.Errorf("delete audit records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete audit records: %w", err)
	}
	return n, nil
}
