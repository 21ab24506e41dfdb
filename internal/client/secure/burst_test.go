package secure

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"conclave/internal/e2ee"
)

// TestJoinBurstSharesRounds: members joining in a burst (one every 50 ms,
// faster than e2ee.RoundQuiet) share verification rounds instead of
// running one per join (docs/e2ee.md, section 14, rule 1): each member
// commits a bounded number of times, all end with one meeting code, and
// no honest member is reported as seeing a different list of
// participants. Before the coalescing each join cost every member a
// commit and a reveal: 16 joins made the first member commit 16 times.
func TestJoinBurstSharesRounds(t *testing.T) {
	const n = 16
	r := newRelay(t)
	var ns [n]notices
	var ss []*Session
	for i := range n {
		ss = append(ss, r.join(fmt.Sprintf("p%02d", i), Config{OnNotice: ns[i].add}))
		r.pump()
		r.clock.Advance(50 * time.Millisecond)
	}
	r.settle()
	// The warning of rule 6 would come ViewGrace after a commit to
	// another view: let it.
	r.clock.Advance(ViewGrace)
	r.settle()
	sameCodes(t, ss...)
	commits := r.commitsBy()
	// The burst lasts 800 ms: within RoundMaxWait, so a member commits
	// once after it, and may follow a peer's higher round once more.
	for _, s := range ss {
		if c := commits[s.self]; c < 1 || c > 3 {
			t.Errorf("%s committed %d times for a burst of %d joins", s.self, c, n)
		}
		if len(s.Participants()) != n {
			t.Errorf("%s lists %d participants", s.self, len(s.Participants()))
		}
	}
	noViewWarnings(t, ns[:])
	t.Logf("%d joins in %v: commits per member %v", n, n*50*time.Millisecond, commits)
}

// TestJoinStreamKeepsRounds: under a continuous stream of joins (one
// every 250 ms for 10 s, never quiet for e2ee.RoundQuiet) every member
// still commits at least every e2ee.RoundMaxWait, far less than once per
// join; once the stream ends they agree on a code, and nobody is told
// that an honest member sees another list of participants.
func TestJoinStreamKeepsRounds(t *testing.T) {
	const n = 40
	r := newRelay(t)
	var ns [n]notices
	var ss []*Session
	for i := range n {
		ss = append(ss, r.join(fmt.Sprintf("p%02d", i), Config{OnNotice: ns[i].add}))
		r.pump()
		r.clock.Advance(250 * time.Millisecond)
		r.pump()
	}
	r.settle()
	r.clock.Advance(ViewGrace)
	r.settle()
	sameCodes(t, ss...)
	commits := r.commitsBy()
	// 10 s of joins: one commit per RoundMaxWait (5), and the last one
	// after the stream; not one per join (40).
	if c := commits["p00"]; c < 4 || c > 7 {
		t.Errorf("p00 committed %d times during %d joins", c, n)
	}
	noViewWarnings(t, ns[:])
	t.Logf("%d joins over %v: commits per member %v", n, n*250*time.Millisecond, commits)
}

// noViewWarnings fails the test if any member was told that another sees
// a different list of participants (docs/e2ee.md, section 14, rule 6).
func noViewWarnings(t *testing.T, ns []notices) {
	t.Helper()
	for i := range ns {
		for _, w := range ns[i].warnings() {
			if strings.Contains(w, "DIFFERENT LIST") {
				t.Errorf("p%02d was warned: %s", i, w)
			}
		}
	}
}

// commitsBy counts the commits each member sent.
func (r *relay) commitsBy() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, d := range r.out {
		if d.kind == "verify" && e2ee.IsCommit(d.payload) {
			out[d.from]++
		}
	}
	return out
}
