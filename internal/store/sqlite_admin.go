package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// normalRoles sorts role names and drops empty and repeated ones.
func normalRoles(roles []string) []string {
	var out []string
	for _, r := range roles {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// kindOf is the account kind that goes with a set of management roles.
func kindOf(roles []string) Role {
	if len(roles) > 0 {
		return RoleAdmin
	}
	return RoleUser
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertRoles(ctx context.Context, tx execer, userID int64, roles []string) error {
	for _, r := range roles {
		if strings.Contains(r, ",") {
			return fmt.Errorf("role name %q contains a comma", r)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_roles (user_id, role) VALUES (?, ?)`, userID, r); err != nil {
			return fmt.Errorf("add role %s: %w", r, mapErr(err))
		}
	}
	return nil
}

// SetUserRoles implements Store.
func (s *DB) SetUserRoles(ctx context.Context, id int64, roles []string) error {
	roles = normalRoles(roles)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set roles of user %d: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE id = ?`, string(kindOf(roles)), id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("set roles of user %d: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_roles WHERE user_id = ?`, id); err != nil {
		return fmt.Errorf("set roles of user %d: %w", id, err)
	}
	if err := insertRoles(ctx, tx, id, roles); err != nil {
		return fmt.Errorf("set roles of user %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set roles of user %d: %w", id, err)
	}
	return nil
}

// DeleteUser implements Store. Foreign keys cascade to sessions, password
// history, roles, memberships and device tokens, and clear room owners
// and the owner of device certificates (kept for the revocation list).
func (s *DB) DeleteUser(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete user %d: %w", id, err)
	}
	return nil
}

// UpdateUserIdentity implements Store.
func (s *DB) UpdateUserIdentity(ctx context.Context, id int64, displayName, source, externalID string) error {
	if source == "" {
		source = SourceLocal
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET display_name = ?, source = ?, external_id = ? WHERE id = ?`,
		displayName, source, externalID, id)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("update identity of user %d: %w", id, err)
	}
	return nil
}

// UserByExternalID implements Store.
func (s *DB) UserByExternalID(ctx context.Context, source, externalID string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE source = ? AND external_id = ?`, source, externalID))
	if err != nil {
		return User{}, fmt.Errorf("user %s %q: %w", source, externalID, err)
	}
	return u, nil
}

// CountRoleHolders implements Store.
func (s *DB) CountRoleHolders(ctx context.Context, name string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_roles WHERE role = ?`, name).Scan(&n); err != nil {
		return 0, fmt.Errorf("count holders of role %s: %w", name, err)
	}
	return n, nil
}

// CreateCustomRole implements Store.
func (s *DB) CreateCustomRole(ctx context.Context, r CustomRole) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO custom_roles (name, description, permissions, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		r.Name, r.Description, strings.Join(r.Permissions, ","), toNanos(r.CreatedAt), toNanos(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create role %s: %w", r.Name, mapErr(err))
	}
	return nil
}

// UpdateCustomRole implements Store.
func (s *DB) UpdateCustomRole(ctx context.Context, r CustomRole) error {
	res, err := s.db.ExecContext(ctx, `UPDATE custom_roles SET description = ?, permissions = ?, updated_at = ? WHERE name = ?`,
		r.Description, strings.Join(r.Permissions, ","), toNanos(r.UpdatedAt), r.Name)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("update role %s: %w", r.Name, err)
	}
	return nil
}

// DeleteCustomRole implements Store.
func (s *DB) DeleteCustomRole(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM custom_roles WHERE name = ?`, name)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("delete role %s: %w", name, err)
	}
	return nil
}

// CustomRoles implements Store.
func (s *DB) CustomRoles(ctx context.Context) ([]CustomRole, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, description, permissions, created_at, updated_at FROM custom_roles ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	defer rows.Close()
	var out []CustomRole
	for rows.Next() {
		var (
			r                CustomRole
			perms            string
			created, updated int64
		)
		if err := rows.Scan(&r.Name, &r.Description, &perms, &created, &updated); err != nil {
			return nil, fmt.Errorf("list roles: %w", err)
		}
		if perms != "" {
			r.Permissions = strings.Split(perms, ",")
		}
		r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	return out, nil
}

const sessionColumns = `s.id_hash, s.user_id, s.created_at, s.last_seen, s.expires_at, s.csrf_token, s.remote, s.plane, s.method`

func scanSession(row interface{ Scan(...any) error }) (Session, error) {
	var (
		ss                         Session
		created, lastSeen, expires int64
	)
	if err := row.Scan(&ss.IDHash, &ss.UserID, &created, &lastSeen, &expires, &ss.CSRFToken, &ss.Remote, &ss.Plane, &ss.Method); err != nil {
		return Session{}, mapErr(err)
	}
	ss.CreatedAt = fromNanos(created)
	ss.LastSeen = fromNanos(lastSeen)
	ss.ExpiresAt = fromNanos(expires)
	return ss, nil
}

// ListSessions implements Store.
func (s *DB) ListSessions(ctx context.Context, f SessionFilter) ([]Session, error) {
	where, args := sessionWhere(f)
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions s JOIN users u ON u.id = s.user_id WHERE `+where+
		` ORDER BY s.created_at DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		ss, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// Setting implements Store.
func (s *DB) Setting(ctx context.Context, key string) (string, error) {
	var v string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v); err != nil {
		return "", fmt.Errorf("setting %s: %w", key, mapErr(err))
	}
	return v, nil
}

// SetSetting implements Store.
func (s *DB) SetSetting(ctx context.Context, key, value string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, key, value, toNanos(now))
	if err != nil {
		return fmt.Errorf("set setting %s: %w", key, err)
	}
	return nil
}
