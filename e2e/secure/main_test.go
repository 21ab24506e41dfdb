package secure

import (
	"testing"

	"conclave/internal/testutil/netns"
)

// The native participants and the server run in a network namespace that
// has only lo, so no test traffic can leave loopback.
func TestMain(m *testing.M) { netns.Isolate(m) }
