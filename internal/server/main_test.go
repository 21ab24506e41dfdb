package server_test

import (
	"testing"

	"conclave/internal/testutil/pgtest"
)

// TestMain stops the PostgreSQL server that tests of the --database store
// start (internal/testutil/pgtest).
func TestMain(m *testing.M) { pgtest.Main(m) }
