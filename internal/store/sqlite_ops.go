package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoSnapshot is returned by Snapshot on PostgreSQL, whose database is
// backed up with PostgreSQL's own tools (docs/admin.md, "Backups").
var ErrNoSnapshot = errors.New("the PostgreSQL database is not in Conclave's backups: back it up with pg_dump or base backups")

// Snapshot writes a consistent copy of an SQLite database to path (which
// must not exist) with VACUUM INTO, while others keep reading and
// writing: what a backup holds.
func (s *DB) Snapshot(ctx context.Context, path string) error {
	if s.Engine() != "sqlite" {
		return ErrNoSnapshot
	}
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("snapshot the database: %w", err)
	}
	return nil
}
