package meeting

import (
	"testing"

	"conclave/internal/e2ee"
)

// TestVerifyBudgetCoversHonestRounds: a member's commits are bounded by
// e2ee.CommitRate and e2ee.CommitBurst (docs/e2ee.md, section 14, rule 1),
// and each round adds at most one reveal. The server's budget for verify
// messages must relay all of that, with room to spare for messages that
// the network holds back and then delivers together (at least half the
// burst): otherwise it drops honest commits, and members stay at
// "verifying" and warn about each other.
func TestVerifyBudgetCoversHonestRounds(t *testing.T) {
	if verifyRate < 2*e2ee.CommitRate {
		t.Errorf("the server relays %v verify messages a second; an honest member may send %v", float64(verifyRate), 2*e2ee.CommitRate)
	}
	if verifyBurst < 2*2*e2ee.CommitBurst {
		t.Errorf("the server relays %d verify messages at once; an honest member may send %d, and half the burst is kept for delays", verifyBurst, 2*e2ee.CommitBurst)
	}
}
