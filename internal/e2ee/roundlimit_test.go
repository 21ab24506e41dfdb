package e2ee

import (
	"crypto/ecdsa"
	"math"
	"testing"
)

// TestRoundsCannotBeExhausted: a participant (any guest of the meeting)
// commits to the last round a u32 can number. The others move to it with
// it, as rule 3 of docs/e2ee.md section 14 says; before the review of
// issue 11 the next epoch then had no round left, and no member could
// show a meeting code again for the rest of the meeting. Now such a commit
// is refused (the caller warns about its sender) and, once the sender has
// left, the others agree on a code.
func TestRoundsCannotBeExhausted(t *testing.T) {
	const meeting = "m-rounds"
	member := func(pid string) (*ecdsa.PrivateKey, *VerifiedAnnouncement) {
		m := newPaceMember(t, meeting, pid)
		return m.dev, m.ann
	}
	annDev, ann := member("p-ann")
	bobDev, bob := member("p-bob")
	malDev, mal := member("p-mal")
	a := NewRoundState(meeting, ann.ParticipantID, annDev, nil, 0)
	b := NewRoundState(meeting, bob.ParticipantID, bobDev, nil, 0)
	all := []*VerifiedAnnouncement{ann, bob, mal}
	if _, err := a.Begin(all, Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Begin(all, Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, NonceLen)
	last, err := SignCommit(malDev, Commit{MeetingID: meeting, ParticipantID: mal.ParticipantID, Round: math.MaxUint32, View: ViewHash(all)}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*RoundState{a, b} {
		if _, err := s.OnCommit(mal.ParticipantID, last); err == nil {
			t.Errorf("%s took a commit of round %d", s.self, uint32(math.MaxUint32))
		}
		s.Pending()
	}

	// Mal leaves: a new epoch for Ann and Bob, who must agree on a code.
	two := []*VerifiedAnnouncement{ann, bob}
	ca, err := a.Begin(two, Checkpoint{})
	if err != nil {
		t.Fatalf("Ann after Mal left: %v", err)
	}
	cb, err := b.Begin(two, Checkpoint{})
	if err != nil {
		t.Fatalf("Bob after Mal left: %v", err)
	}
	if _, err := a.OnCommit(bob.ParticipantID, cb); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OnCommit(ann.ParticipantID, ca); err != nil {
		t.Fatal(err)
	}
	// A commit may have moved one of them a round on: deliver it.
	if p := a.Pending(); p != nil {
		if _, err := b.OnCommit(ann.ParticipantID, p); err != nil {
			t.Fatal(err)
		}
	}
	if p := b.Pending(); p != nil {
		if _, err := a.OnCommit(bob.ParticipantID, p); err != nil {
			t.Fatal(err)
		}
	}
	ra, rb := a.Reveal(), b.Reveal()
	if ra == nil || rb == nil {
		t.Fatalf("no reveal after Mal left (Ann waits for %v, Bob for %v)", a.Waiting(), b.Waiting())
	}
	if err := a.OnReveal(bob.ParticipantID, rb); err != nil {
		t.Fatal(err)
	}
	if err := b.OnReveal(ann.ParticipantID, ra); err != nil {
		t.Fatal(err)
	}
	if a.Code() == "" || a.Code() != b.Code() {
		t.Fatalf("after Mal left Ann shows %q, Bob %q", a.Code(), b.Code())
	}
}
