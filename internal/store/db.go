package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// engine names a database engine behind DB.
type engine int

const (
	engineSQLite engine = iota
	enginePostgres
)

func (e engine) String() string {
	if e == enginePostgres {
		return "postgres"
	}
	return "sqlite"
}

// pgWriteLock is the key of the PostgreSQL advisory lock every write
// transaction takes first, so that transactions run one after the other
// as SQLite's immediate transactions do: the read-then-write sequences
// of the store (the audit chain, sign-in throttles, session limits) rely
// on it.
const pgWriteLock = 0x636f6e636c617665 // "conclave"

// sqlDB is the connection pool of a DB. Queries are written once, with
// '?' placeholders; on PostgreSQL they are rewritten to $1, $2, ... and
// transactions take the write lock.
type sqlDB struct {
	pool   *sql.DB
	engine engine
}

func (d *sqlDB) q(query string) string {
	if d.engine == enginePostgres {
		return rebind(query)
	}
	return query
}

// ExecContext runs a statement.
func (d *sqlDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.pool.ExecContext(ctx, d.q(query), args...)
}

// QueryContext runs a query.
func (d *sqlDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.pool.QueryContext(ctx, d.q(query), args...)
}

// QueryRowContext runs a query that returns at most one row.
func (d *sqlDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.pool.QueryRowContext(ctx, d.q(query), args...)
}

// PingContext checks the connection.
func (d *sqlDB) PingContext(ctx context.Context) error { return d.pool.PingContext(ctx) }

// Close closes the pool.
func (d *sqlDB) Close() error { return d.pool.Close() }

// BeginTx starts a write transaction: on SQLite an immediate one (see
// OpenSQLite), on PostgreSQL one that first takes the store's write lock.
func (d *sqlDB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sqlTx, error) {
	tx, err := d.pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if d.engine == enginePostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgWriteLock)); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	return &sqlTx{tx: tx, d: d}, nil
}

// sqlTx is a transaction of a sqlDB.
type sqlTx struct {
	tx *sql.Tx
	d  *sqlDB
}

// ExecContext runs a statement in the transaction.
func (t *sqlTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.d.q(query), args...)
}

// QueryContext runs a query in the transaction.
func (t *sqlTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.d.q(query), args...)
}

// QueryRowContext runs a query that returns at most one row in the
// transaction.
func (t *sqlTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.d.q(query), args...)
}

// Commit commits the transaction.
func (t *sqlTx) Commit() error { return t.tx.Commit() }

// Rollback aborts the transaction (a no-op after Commit).
func (t *sqlTx) Rollback() error { return t.tx.Rollback() }

// rebind rewrites the '?' placeholders of query to PostgreSQL's $1, $2,
// ..., leaving string literals, quoted identifiers and comments alone.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(query) {
				if query[j] == c {
					if j+1 < len(query) && query[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			b.WriteString(query[i:min(j+1, len(query))])
			i = j
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
