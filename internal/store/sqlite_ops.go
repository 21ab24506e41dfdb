package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
)

// Snapshot writes a consistent copy of the database to path (which must
// not exist) while others keep reading and writing: what a backup holds.
// SQLite copies itself with VACUUM INTO; PostgreSQL is dumped with
// pg_dump (custom format, without owners and privileges, so that it
// loads into a database of another role), which Debian's
// postgresql-client provides, of the server's major version or newer.
func (s *DB) Snapshot(ctx context.Context, path string) error {
	if s.db.engine == enginePostgres {
		if err := runPG(ctx, "pg_dump", s.pgURL, "--format=custom", "--no-owner", "--no-privileges", "--no-comments", "--file", path); err != nil {
			return fmt.Errorf("snapshot the database: %w", err)
		}
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("snapshot the database: %w", err)
	}
	return nil
}

// RestorePostgres loads a PostgreSQL snapshot (made by Snapshot) into the
// database at rawURL, which must hold no table yet, with pg_restore in a
// single transaction: on any error nothing is loaded.
func RestorePostgres(ctx context.Context, rawURL, path string) error {
	s, err := openPostgresPool(rawURL)
	if err != nil {
		return err
	}
	var tables int
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables)
	s.Close()
	if err != nil {
		return fmt.Errorf("restore the database: %w", redact(err, rawURL))
	}
	if tables > 0 {
		return errors.New("restore the database: the PostgreSQL database is not empty; restore into a new, empty database (createdb --owner ROLE NAME)")
	}
	if err := runPG(ctx, "pg_restore", rawURL, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", path); err != nil {
		return fmt.Errorf("restore the database: %w", err)
	}
	return nil
}

// runPG runs a PostgreSQL client program on the database at rawURL. The
// password, if the URL has one, goes in PGPASSWORD rather than on the
// command line, where ps shows it.
func runPG(ctx context.Context, program, rawURL string, args ...string) error {
	bin, err := exec.LookPath(program)
	if err != nil {
		return fmt.Errorf("%s is not installed: install PostgreSQL's client programs (Debian: postgresql-client, of the server's major version or newer)", program)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("the database URL does not parse: %v", redact(err, rawURL))
	}
	env := os.Environ()
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			env = append(env, "PGPASSWORD="+pw)
			u.User = url.User(u.User.Username())
		}
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "--dbname", u.String())...)
	cmd.Env = append(env, "PGAPPNAME=conclave-"+program)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s: %s", program, redact(errors.New(msg), rawURL))
	}
	return nil
}
