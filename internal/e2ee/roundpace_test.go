package e2ee

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"testing"
	"time"
)

// The pace of the rounds (docs/e2ee.md, section 14, rule 1): changes of
// the view are coalesced, commits are bounded by a token bucket, and a
// member that owes a commit neither reveals nor shows a code.

// paceMember is a member with its announcement and device key.
type paceMember struct {
	dev *ecdsa.PrivateKey
	ann *VerifiedAnnouncement
}

func newPaceMember(t *testing.T, meeting, pid string) paceMember {
	t.Helper()
	dev, _ := GenerateDeviceKey()
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	p, err := SignAnnouncement(dev, Announcement{MeetingID: meeting, ParticipantID: pid, DisplayName: pid, ECDHPublicKey: eph.PublicKey(), SenderIndex: 1, Timestamp: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifyAnnouncement(p, VerifyOptions{MeetingID: meeting})
	if err != nil {
		t.Fatal(err)
	}
	return paceMember{dev, v}
}

// manualClock is a time the test moves.
type manualClock struct{ t time.Time }

func (c *manualClock) now() time.Time          { return c.t }
func (c *manualClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newPaced(m paceMember, meeting string, clk *manualClock) *RoundState {
	r := NewRoundState(meeting, m.ann.ParticipantID, m.dev, nil, testDigits)
	r.SetClock(clk.now)
	return r
}

// TestRoundWaitsForAQuietView: three changes 100 ms apart cost one commit,
// made RoundQuiet after the last; before it the member neither reveals
// nor shows a code.
func TestRoundWaitsForAQuietView(t *testing.T) {
	const meeting = "m-pace"
	clk := &manualClock{time.Unix(1_800_000_000, 0)}
	a := newPaceMember(t, meeting, "p-a")
	peers := []paceMember{newPaceMember(t, meeting, "p-b"), newPaceMember(t, meeting, "p-c"), newPaceMember(t, meeting, "p-d")}
	r := newPaced(a, meeting, clk)
	view := []*VerifiedAnnouncement{a.ann}
	start := clk.t
	for i, p := range peers {
		if i > 0 {
			clk.advance(100 * time.Millisecond)
		}
		view = append(view, p.ann)
		r.Change(view, Checkpoint{})
		if c, err := r.CommitDue(); c != nil || err != nil {
			t.Fatalf("a commit at once after change %d (%v)", i+1, err)
		}
	}
	at, owed := r.Due()
	if want := start.Add(200*time.Millisecond + RoundQuiet); !owed || !at.Equal(want) {
		t.Fatalf("due at %v (owed %v), want %v", at.Sub(start), owed, want.Sub(start))
	}
	clk.advance(RoundQuiet - time.Millisecond)
	if c, _ := r.CommitDue(); c != nil {
		t.Fatal("committed before the view was quiet")
	}
	clk.advance(time.Millisecond)
	c, err := r.CommitDue()
	if err != nil || c == nil {
		t.Fatalf("no commit once the view was quiet: %v", err)
	}
	pc, _ := ParseCommit(c)
	if pc.View != ViewHash(view) || r.CommitCount() != 1 || r.Epochs() != 3 {
		t.Fatalf("commit of another view, or %d commits for %d changes", r.CommitCount(), r.Epochs())
	}
	if _, owed := r.Due(); owed {
		t.Fatal("still owes a commit after making it")
	}
}

// TestRoundMaxWait: under a change every 200 ms for 10 s (never quiet), a
// member still commits, at most RoundMaxWait after the first change it
// has not committed to, and far less often than once per change.
func TestRoundMaxWait(t *testing.T) {
	const meeting = "m-pace"
	clk := &manualClock{time.Unix(1_800_000_000, 0)}
	a := newPaceMember(t, meeting, "p-a")
	r := newPaced(a, meeting, clk)
	view := []*VerifiedAnnouncement{a.ann}
	var firstOwed time.Time
	changes := 0
	for step := 0; step < 1000; step++ { // 10 ms steps
		if step%20 == 0 {
			view = append(view, newPaceMember(t, meeting, "p-"+string(rune('b'+changes))).ann)
			r.Change(view, Checkpoint{})
			changes++
			if firstOwed.IsZero() {
				firstOwed = clk.t
			}
		}
		if c, _ := r.CommitDue(); c != nil {
			if waited := clk.t.Sub(firstOwed); waited > RoundMaxWait {
				t.Fatalf("committed %v after the first change, more than %v", waited, RoundMaxWait)
			}
			firstOwed = time.Time{}
		}
		if !firstOwed.IsZero() && clk.t.Sub(firstOwed) > RoundMaxWait {
			t.Fatalf("no commit %v after the first change", clk.t.Sub(firstOwed))
		}
		clk.advance(10 * time.Millisecond)
	}
	if n := r.CommitCount(); n < 4 || n > 5 {
		t.Fatalf("%d commits for %d changes in 10 s, want one per RoundMaxWait", n, changes)
	}
}

// TestCommitBudget: a peer of the view that keeps leading to higher rounds
// moves the member at once while it has tokens, then once a token is
// back: never more than CommitBurst + CommitRate*t commits. While a move
// waits, the member reveals nothing and shows no code, although it holds
// the peer's commit and reveal of the higher round; the commit it makes
// then has a fresh nonce.
func TestCommitBudget(t *testing.T) {
	const meeting = "m-pace"
	clk := &manualClock{time.Unix(1_800_000_000, 0)}
	a, b := newPaceMember(t, meeting, "p-a"), newPaceMember(t, meeting, "p-b")
	r := newPaced(a, meeting, clk)
	view := []*VerifiedAnnouncement{a.ann, b.ann}
	r.Change(view, Checkpoint{})
	clk.advance(RoundQuiet)
	if c, _ := r.CommitDue(); c == nil {
		t.Fatal("no first commit")
	}
	start := clk.t
	nonce := make([]byte, NonceLen)
	var lastHash [32]byte
	for round := uint32(2); round < 40; round++ {
		c, _ := SignCommit(b.dev, Commit{MeetingID: meeting, ParticipantID: "p-b", Round: round, View: ViewHash(view)}, nonce)
		if _, err := r.OnCommit("p-b", c); err != nil {
			t.Fatal(err)
		}
		rv, _ := EncodeReveal(Reveal{MeetingID: meeting, ParticipantID: "p-b", Round: round, Nonce: nonce})
		if err := r.OnReveal("p-b", rv); err != nil {
			t.Fatal(err)
		}
		moved := r.Pending()
		if moved == nil {
			if r.Reveal() != nil || r.Code() != "" {
				t.Fatalf("round %d: revealed or showed a code while a move waits for a token", round)
			}
			at, owed := r.Due()
			if !owed || !at.After(clk.t) {
				t.Fatalf("round %d: no move and none owed", round)
			}
			clk.t = at
			if moved, _ = r.CommitDue(); moved == nil {
				t.Fatalf("round %d: no move when the token came", round)
			}
		}
		pc, _ := ParseCommit(moved)
		if pc.Round != round || pc.NonceHash == lastHash {
			t.Fatalf("round %d: moved to %d, or with the nonce of before", round, pc.Round)
		}
		lastHash = pc.NonceHash
		if r.Reveal() == nil || r.Code() == "" {
			t.Fatalf("round %d: no reveal or code once moved", round)
		}
		if limit := CommitBurst + CommitRate*clk.t.Sub(start).Seconds() + 1; float64(r.CommitCount()) > limit {
			t.Fatalf("%d commits in %v, more than the budget %v", r.CommitCount(), clk.t.Sub(start), limit)
		}
	}
	if clk.t.Sub(start) < 25*time.Second {
		t.Fatalf("38 moves took %v: the budget did not slow them", clk.t.Sub(start))
	}
}

// TestMoveDuringQuietWait: a peer's commit to the view a member waits to
// commit to, of a higher round, makes it commit at once (rule 3), so
// that the first member whose wait ends leads the others.
func TestMoveDuringQuietWait(t *testing.T) {
	const meeting = "m-pace"
	clk := &manualClock{time.Unix(1_800_000_000, 0)}
	a, b := newPaceMember(t, meeting, "p-a"), newPaceMember(t, meeting, "p-b")
	ra, rb := newPaced(a, meeting, clk), newPaced(b, meeting, clk)
	view := []*VerifiedAnnouncement{a.ann, b.ann}
	ra.Change(view, Checkpoint{})
	clk.advance(50 * time.Millisecond)
	rb.Change(view, Checkpoint{})
	clk.advance(RoundQuiet - 50*time.Millisecond)
	ca, _ := ra.CommitDue()
	if ca == nil {
		t.Fatal("a did not commit after its quiet wait")
	}
	if c, _ := rb.CommitDue(); c != nil {
		t.Fatal("b committed before its wait ended")
	}
	if _, err := rb.OnCommit("p-a", ca); err != nil {
		t.Fatal(err)
	}
	cb := rb.Pending()
	if cb == nil {
		t.Fatal("b did not follow a's round at once")
	}
	if _, err := ra.OnCommit("p-b", cb); err != nil {
		t.Fatal(err)
	}
	rvA, rvB := ra.Reveal(), rb.Reveal()
	if rvA == nil || rvB == nil {
		t.Fatal("no reveals")
	}
	ra.OnReveal("p-b", rvB)
	rb.OnReveal("p-a", rvA)
	if ra.Code() == "" || ra.Code() != rb.Code() || ra.CommitCount() != 1 || rb.CommitCount() != 1 {
		t.Fatalf("codes %q %q after %d and %d commits", ra.Code(), rb.Code(), ra.CommitCount(), rb.CommitCount())
	}
}
