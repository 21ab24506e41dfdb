package store

import (
	"path/filepath"
	"testing"

	"conclave/internal/testutil/pgtest"
)

// The store's test suite runs on both engines: SQLite in a file of the
// test's temporary directory, and Debian's PostgreSQL started for the test
// process (internal/testutil/pgtest), one fresh database per test.
func TestMain(m *testing.M) { pgtest.Main(m) }

// engines names the engines of the suite.
var engines = []string{"sqlite", "postgres"}

// engineDB is a store on a fresh database of one engine, with what is
// needed to open more handles on the same database.
type engineDB struct {
	*DB
	name string
	dsn  string // the SQLite file, or the PostgreSQL URL
}

// open opens another handle on the same database; the caller closes it.
func (e *engineDB) open() (*DB, error) { return Open(e.dsn) }

// newDatabase returns the name (a path or a URL) of an empty database of
// the engine, without opening it.
func newDatabase(t *testing.T, engine string) string {
	t.Helper()
	if engine == "postgres" {
		return pgtest.NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), DBFileName)
}

// openEngine opens a fresh store on engine.
func openEngine(t *testing.T, engine string) *engineDB {
	t.Helper()
	dsn := newDatabase(t, engine)
	s, err := Open(dsn)
	if err != nil {
		t.Fatalf("open %s store: %v", engine, err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Engine() != engine {
		t.Fatalf("Open(%s) gave a %s store", dsn, s.Engine())
	}
	return &engineDB{DB: s, name: engine, dsn: dsn}
}

// forEachEngine runs fn as a subtest on a fresh store of each engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, e *engineDB)) {
	for _, name := range engines {
		t.Run(name, func(t *testing.T) { fn(t, openEngine(t, name)) })
	}
}
