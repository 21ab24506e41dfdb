package auth

import (
	"path/filepath"
	"testing"
	"time"

	"conclave/internal/store"
)

// cheapArgon2 keeps tests fast; production uses DefaultArgon2.
var cheapArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

var epoch = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// goodPassword satisfies CheckPasswordPolicy.
const goodPassword = "Correct-Horse-42"

func openStore(t *testing.T) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), store.DBFileName))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
