package store

import (
	"context"
	"fmt"
)

// Snapshot writes a consistent copy of the database to path (which must
// not exist) with VACUUM INTO, while others keep reading and writing: what
// a backup holds.
func (s *SQLite) Snapshot(ctx context.Context, path string) error {
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("snapshot the database: %w", err)
	}
	return nil
}
