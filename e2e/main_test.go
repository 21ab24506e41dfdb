package e2e

import (
	"testing"

	"conclave/internal/testutil/netns"
	"conclave/internal/testutil/pgtest"
)

// The tests run in a network namespace that has only lo: the server, the
// browsers and the native clients see 127.0.0.1 and ::1 and nothing else,
// so no test traffic leaves loopback (the browsers would otherwise pair
// the machine's own address with the server's). The PostgreSQL server of
// TestCluster is stopped and its files removed at the end.
func TestMain(m *testing.M) { netns.Isolate(m, pgtest.Stop) }
