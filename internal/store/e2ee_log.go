package store

import (
	"context"
	"errors"
	"fmt"
)

// AppendLogRecord implements Store. The write transaction takes the lock
// (SQLite: immediate; PostgreSQL: the advisory write lock)
// up front, so concurrent appends (a server and the admin CLI) get
// consecutive indexes.
func (s *DB) AppendLogRecord(ctx context.Context, record []byte) (int64, error) {
	if len(record) == 0 {
		return 0, errors.New("append log record: empty record")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("append log record: %w", err)
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_log`).Scan(&n); err != nil {
		return 0, fmt.Errorf("append log record: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_log (idx, record) VALUES (?, ?)`, n, record); err != nil {
		return 0, fmt.Errorf("append log record: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("append log record: %w", err)
	}
	return n, nil
}

// LogRecords implements Store.
func (s *DB) LogRecords(ctx context.Context, start int64, limit int) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT record FROM e2ee_log WHERE idx >= ? ORDER BY idx LIMIT ?`, start, limit)
	if err != nil {
		return nil, fmt.Errorf("read log records: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("read log records: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
