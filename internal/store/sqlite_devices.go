package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

var _ DeviceStore = (*DB)(nil)

// CreateDeviceToken implements DeviceStore.
func (s *DB) CreateDeviceToken(ctx context.Context, t DeviceToken) error {
	if len(t.TokenHash) == 0 {
		return errors.New("create device token: empty token hash")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO device_tokens
		(token_hash, user_id, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		t.TokenHash, t.UserID, t.CreatedBy, toNanos(t.CreatedAt), toNanos(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create device token for user %d: %w", t.UserID, mapErr(err))
	}
	return nil
}

// ConsumeDeviceToken implements DeviceStore.
func (s *DB) ConsumeDeviceToken(ctx context.Context, tokenHash []byte, now time.Time) (DeviceToken, error) {
	n := toNanos(now)
	var (
		t                DeviceToken
		created, expires int64
		used             sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `UPDATE device_tokens SET used_at = ?
		WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?
		RETURNING token_hash, user_id, created_by, created_at, expires_at, used_at`, n, tokenHash, n).
		Scan(&t.TokenHash, &t.UserID, &t.CreatedBy, &created, &expires, &used)
	if err != nil {
		return DeviceToken{}, fmt.Errorf("consume device token: %w", mapErr(err))
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = fromNanos(created), fromNanos(expires), fromNullNanos(used)
	return t, nil
}

const deviceCertColumns = `serial, user_id, aor, fingerprint, key_type, issued_at, not_after, revoked_at, reason, der, digest_ha1`

func scanDeviceCert(row interface{ Scan(...any) error }) (DeviceCert, error) {
	var (
		c                DeviceCert
		issued, notAfter int64
		user, revoked    sql.NullInt64
	)
	if err := row.Scan(&c.Serial, &user, &c.AOR, &c.Fingerprint, &c.KeyType, &issued, &notAfter, &revoked, &c.Reason, &c.DER, &c.DigestHA1); err != nil {
		return DeviceCert{}, mapErr(err)
	}
	c.UserID = user.Int64 // 0 once the account is deleted
	c.IssuedAt, c.NotAfter, c.RevokedAt = fromNanos(issued), fromNanos(notAfter), fromNullNanos(revoked)
	return c, nil
}

// CreateDeviceCert implements DeviceStore.
func (s *DB) CreateDeviceCert(ctx context.Context, c DeviceCert) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO device_certs (`+deviceCertColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Serial, c.UserID, c.AOR, c.Fingerprint, c.KeyType, toNanos(c.IssuedAt), toNanos(c.NotAfter),
		toNullNanos(c.RevokedAt), c.Reason, c.DER, c.DigestHA1)
	if err != nil {
		return fmt.Errorf("record device certificate %s: %w", c.Serial, mapErr(err))
	}
	return nil
}

// DeviceCertBySerial implements DeviceStore.
func (s *DB) DeviceCertBySerial(ctx context.Context, serial string) (DeviceCert, error) {
	c, err := scanDeviceCert(s.db.QueryRowContext(ctx, `SELECT `+deviceCertColumns+` FROM device_certs WHERE serial = ?`, serial))
	if err != nil {
		return DeviceCert{}, fmt.Errorf("device certificate %s: %w", serial, err)
	}
	return c, nil
}

func (s *DB) queryDeviceCerts(ctx context.Context, query string, args ...any) ([]DeviceCert, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeviceCert
	for rows.Next() {
		c, err := scanDeviceCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListDeviceCerts implements DeviceStore.
func (s *DB) ListDeviceCerts(ctx context.Context, userID int64) ([]DeviceCert, error) {
	q := `SELECT ` + deviceCertColumns + ` FROM device_certs`
	var args []any
	if userID != 0 {
		q += ` WHERE user_id = ?`
		args = append(args, userID)
	}
	out, err := s.queryDeviceCerts(ctx, q+` ORDER BY issued_at DESC, serial`, args...)
	if err != nil {
		return nil, fmt.Errorf("list device certificates: %w", err)
	}
	return out, nil
}

// RevokeDeviceCert implements DeviceStore.
func (s *DB) RevokeDeviceCert(ctx context.Context, serial string, t time.Time, reason int) (DeviceCert, error) {
	_, err := s.db.ExecContext(ctx, `UPDATE device_certs SET revoked_at = ?, reason = ?
		WHERE serial = ? AND revoked_at IS NULL`, toNanos(t), reason, serial)
	if err != nil {
		return DeviceCert{}, fmt.Errorf("revoke device certificate %s: %w", serial, mapErr(err))
	}
	return s.DeviceCertBySerial(ctx, serial)
}

// SetDeviceDigest implements DeviceStore.
func (s *DB) SetDeviceDigest(ctx context.Context, serial, digest string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE device_certs SET digest_ha1 = ? WHERE serial = ?`, digest, serial)
	if err != nil {
		return fmt.Errorf("device certificate %s: %w", serial, mapErr(err))
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("device certificate %s: %w", serial, ErrNotFound)
	}
	return nil
}

// RevokedDeviceCerts implements DeviceStore.
func (s *DB) RevokedDeviceCerts(ctx context.Context, now time.Time) ([]DeviceCert, error) {
	out, err := s.queryDeviceCerts(ctx, `SELECT `+deviceCertColumns+` FROM device_certs
		WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY revoked_at, serial`, toNanos(now))
	if err != nil {
		return nil, fmt.Errorf("list revoked device certificates: %w", err)
	}
	return out, nil
}

// AddCDR implements DeviceStore.
func (s *DB) AddCDR(ctx context.Context, c CDR) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO cdrs (id, started_at, sealed) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed`, c.ID, toNanos(c.StartedAt), c.Sealed)
	if err != nil {
		return fmt.Errorf("store call record %s: %w", c.ID, mapErr(err))
	}
	return nil
}

// ListCDRs implements DeviceStore.
func (s *DB) ListCDRs(ctx context.Context, from, to time.Time, limit int) ([]CDR, error) {
	if limit <= 0 {
		limit = 1000
	}
	if to.IsZero() {
		to = time.Unix(0, 1<<62)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, started_at, sealed FROM cdrs
		WHERE started_at >= ? AND started_at < ? ORDER BY started_at DESC, id LIMIT ?`, toNanos(from), toNanos(to), limit)
	if err != nil {
		return nil, fmt.Errorf("list call records: %w", err)
	}
	defer rows.Close()
	var out []CDR
	for rows.Next() {
		var c CDR
		var started int64
		if err := rows.Scan(&c.ID, &started, &c.Sealed); err != nil {
			return nil, fmt.Errorf("list call records: %w", err)
		}
		c.StartedAt = fromNanos(started)
		out = append(out, c)
	}
	return out, rows.Err()
}
