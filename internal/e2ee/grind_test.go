package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The malicious relay's birthday search (issue 11). A relay that sits
// between Alice and Bob shows Alice a fake Bob and Bob a fake Alice; it
// wins if both read the same code. The test-only code length is 7 digits
// (about 23 bits), so that the search runs in milliseconds.

const testDigits = 7

// legacyMeetingCode is the derivation of version 1 (docs/e2ee.md before
// issue 11): a hash of the sorted announcement bodies only, kept here as
// the regression fixture of the attack.
func legacyMeetingCode(anns []*VerifiedAnnouncement, digits int) string {
	sorted := slices.Clone(anns)
	slices.SortFunc(sorted, func(a, b *VerifiedAnnouncement) int {
		if c := strings.Compare(a.ParticipantID, b.ParticipantID); c != 0 {
			return c
		}
		return bytes.Compare(a.Body, b.Body)
	})
	h := sha256.New()
	h.Write([]byte("Conclave E2EE v1 meeting code"))
	var n [4]byte
	for _, a := range sorted {
		binary.BigEndian.PutUint32(n[:], uint32(len(a.Body)))
		h.Write(n[:])
		h.Write(a.Body)
	}
	return formatCode(binary.BigEndian.Uint64(h.Sum(nil)[:8]), digits)
}

// mitm holds the two victims' real announcements and the relay's fakes.
type mitm struct {
	meeting      string
	alice, bob   *VerifiedAnnouncement // real
	fakeA, fakeB Announcement          // the relay's templates (timestamp varied)
}

func newMITM(t *testing.T) *mitm {
	t.Helper()
	m := &mitm{meeting: "m-grind"}
	mk := func(pid, name string) *VerifiedAnnouncement {
		dev, _ := GenerateDeviceKey()
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		p, err := SignAnnouncement(dev, Announcement{MeetingID: m.meeting, ParticipantID: pid, DisplayName: name, ECDHPublicKey: eph.PublicKey(), SenderIndex: 9, Timestamp: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		v, err := VerifyAnnouncement(p, VerifyOptions{MeetingID: m.meeting})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	m.alice, m.bob = mk("p-alice", "Alice"), mk("p-bob", "Bob")
	relayDev, _ := GenerateDeviceKey()
	relayEph, _ := ecdh.P256().GenerateKey(rand.Reader)
	m.fakeA = Announcement{MeetingID: m.meeting, ParticipantID: "p-alice", DisplayName: "Alice", ECDHPublicKey: relayEph.PublicKey(), DevicePublicKey: &relayDev.PublicKey, SenderIndex: 9}
	m.fakeB = m.fakeA
	m.fakeB.ParticipantID, m.fakeB.DisplayName = "p-bob", "Bob"
	return m
}

// fake returns the relay's announcement from template a at time ts
// (unsigned: the code covers bodies only).
func fake(t *testing.T, a Announcement, ts int64) *VerifiedAnnouncement {
	a.Timestamp = time.UnixMilli(ts)
	body, err := EncodeAnnouncementBody(a)
	if err != nil {
		t.Fatal(err)
	}
	v := &VerifiedAnnouncement{}
	v.Announcement, v.Body = a, body
	return v
}

// birthdaySearch varies the fake announcements' time stamps, tries at
// most 2^bits of each, and returns a pair whose legacy codes collide.
func (m *mitm) birthdaySearch(t *testing.T, bits int, start int64) (fakeB, fakeA *VerifiedAnnouncement, tries int) {
	seen := map[string]int64{}
	for i := range int64(1) << bits {
		fb := fake(t, m.fakeB, start+i)
		seen[legacyMeetingCode([]*VerifiedAnnouncement{m.alice, fb}, testDigits)] = start + i
	}
	for j := range int64(1) << bits {
		fa := fake(t, m.fakeA, start+j)
		if ts, ok := seen[legacyMeetingCode([]*VerifiedAnnouncement{fa, m.bob}, testDigits)]; ok {
			return fake(t, m.fakeB, ts), fa, int(1<<bits + j + 1)
		}
	}
	return nil, nil, 2 << bits
}

// TestLegacyCodeBirthdaySearch is the regression fixture of the attack on
// version 1: the search finds two different views with the same code.
func TestLegacyCodeBirthdaySearch(t *testing.T) {
	m := newMITM(t)
	fb, fa, tries := m.birthdaySearch(t, 14, 1_800_000_000_000)
	if fb == nil {
		t.Fatalf("no collision in %d tries", tries)
	}
	codeA := legacyMeetingCode([]*VerifiedAnnouncement{m.alice, fb}, testDigits)
	codeB := legacyMeetingCode([]*VerifiedAnnouncement{fa, m.bob}, testDigits)
	if codeA != codeB || ViewHash([]*VerifiedAnnouncement{m.alice, fb}) == ViewHash([]*VerifiedAnnouncement{fa, m.bob}) {
		t.Fatalf("codes %s %s", codeA, codeB)
	}
	t.Logf("version 1: Alice and Bob both read %s with different views after %d hashes (%d-digit code)", codeA, tries, testDigits)
}

// TestRoundDefeatsBirthdaySearch: the relay runs the same search, then
// plays the fakes' side of the round as well as it can (its nonces are
// committed before it learns the victims'). In every one of N attempts the
// two victims' codes differ.
func TestRoundDefeatsBirthdaySearch(t *testing.T) {
	const attempts = 20
	m := newMITM(t)
	relayDev, _ := GenerateDeviceKey()
	for n := range attempts {
		fb, fa, _ := m.birthdaySearch(t, 14, 1_800_000_000_000+int64(n)<<20)
		if fb == nil {
			t.Fatal("the search found no collision")
		}
		// The fakes as the victims verify them: signed by the relay.
		sign := func(v *VerifiedAnnouncement) *VerifiedAnnouncement {
			p, err := SignAnnouncement(relayDev, v.Announcement)
			if err != nil {
				t.Fatal(err)
			}
			out, err := VerifyAnnouncement(p, VerifyOptions{MeetingID: m.meeting})
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		fb, fa = sign(fb), sign(fa)
		codeA := runRound(t, m.meeting, m.alice, fb, relayDev)
		codeB := runRound(t, m.meeting, m.bob, fa, relayDev)
		if codeA == "" || codeB == "" {
			t.Fatalf("attempt %d: a round did not complete", n)
		}
		if codeA == codeB {
			t.Fatalf("attempt %d: the relay's views give one code %s", n, codeA)
		}
	}
	t.Logf("%d attempts with legacy-colliding views: every one gave the two victims different codes", attempts)
}

// runRound plays one round between a victim (real announcement v; the
// test holds no key for it, so its side runs with a key of its own: only
// the nonce matters) and the relay's fake peer.
func runRound(t *testing.T, meeting string, victim, fakePeer *VerifiedAnnouncement, relayDev *ecdsa.PrivateKey) string {
	t.Helper()
	vdev, _ := GenerateDeviceKey()
	// The victim's state, keyed by its own device: rebuild its announcement
	// signed by vdev so that the fake can verify its commit.
	p, _ := SignAnnouncement(vdev, victim.Announcement)
	vAnn, _ := VerifyAnnouncement(p, VerifyOptions{MeetingID: meeting})
	view := []*VerifiedAnnouncement{vAnn, fakePeer}
	vs := NewRoundState(meeting, vAnn.ParticipantID, vdev, nil, testDigits)
	fs := NewRoundState(meeting, fakePeer.ParticipantID, relayDev, nil, testDigits)
	vc, err := vs.Begin(view, Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	fc, _ := fs.Begin(view, Checkpoint{})
	// The relay commits first; the victim reveals only after.
	if r := vs.Reveal(); r != nil {
		t.Fatal("the victim revealed before holding the fake's commit")
	}
	if _, err := vs.OnCommit(fakePeer.ParticipantID, fc); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.OnCommit(vAnn.ParticipantID, vc); err != nil {
		t.Fatal(err)
	}
	vr := vs.Reveal()
	fr := fs.Reveal()
	if err := vs.OnReveal(fakePeer.ParticipantID, fr); err != nil {
		t.Fatal(err)
	}
	fs.OnReveal(vAnn.ParticipantID, vr)
	if vs.Reveal() != nil {
		t.Fatal("a second reveal in one epoch")
	}
	return vs.Code()
}

// TestRelayCannotRecommitAfterReveal: the relay lets a round complete
// honestly on each victim's side, learns the two victims' nonces from
// their reveals, searches for two nonces of its own that give both sides
// one code, and then commits its fakes again with a higher round and
// reveals those nonces. A victim must never combine a nonce it revealed
// with a commit it received after revealing (review of issue 11): in
// every attempt the victims' codes differ.
func TestRelayCannotRecommitAfterReveal(t *testing.T) {
	const attempts = 20
	m := newMITM(t)
	relayDev, _ := GenerateDeviceKey()
	signed := func(a Announcement) *VerifiedAnnouncement {
		a.Timestamp = time.Now()
		p, err := SignAnnouncement(relayDev, a)
		if err != nil {
			t.Fatal(err)
		}
		v, err := VerifyAnnouncement(p, VerifyOptions{MeetingID: m.meeting})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// A victim, with a device key of its own (its announcement re-signed).
	victim := func(real *VerifiedAnnouncement) (*RoundState, *VerifiedAnnouncement) {
		dev, _ := GenerateDeviceKey()
		p, _ := SignAnnouncement(dev, real.Announcement)
		a, err := VerifyAnnouncement(p, VerifyOptions{MeetingID: m.meeting})
		if err != nil {
			t.Fatal(err)
		}
		return NewRoundState(m.meeting, a.ParticipantID, dev, nil, testDigits), a
	}
	nonceOf := func(reveal []byte) []byte {
		v, err := ParseReveal(reveal)
		if err != nil {
			t.Fatal(err)
		}
		return v.Nonce
	}
	for n := range attempts {
		a, annA := victim(m.alice)
		b, annB := victim(m.bob)
		fakeB, fakeA := signed(m.fakeB), signed(m.fakeA)
		viewA := []*VerifiedAnnouncement{annA, fakeB}
		viewB := []*VerifiedAnnouncement{fakeA, annB}
		// The fake's commit of round r to nonce, and its reveal.
		play := func(s *RoundState, fake *VerifiedAnnouncement, view []*VerifiedAnnouncement, round uint32, nonce []byte) {
			t.Helper()
			c, err := SignCommit(relayDev, Commit{MeetingID: m.meeting, ParticipantID: fake.ParticipantID, Round: round, View: ViewHash(view)}, nonce)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.OnCommit(fake.ParticipantID, c); err != nil {
				t.Fatal(err)
			}
			r, _ := EncodeReveal(Reveal{MeetingID: m.meeting, ParticipantID: fake.ParticipantID, Round: round, Nonce: nonce})
			// The victim reveals (once it holds the commit), then gets
			// the fake's reveal.
			s.Reveal()
			if err := s.OnReveal(fake.ParticipantID, r); err != nil {
				t.Fatal(err)
			}
			s.Reveal()
		}
		if _, err := a.Begin(viewA, Checkpoint{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Begin(viewB, Checkpoint{}); err != nil {
			t.Fatal(err)
		}
		play(a, fakeB, viewA, 1, bytes.Repeat([]byte{1}, NonceLen))
		play(b, fakeA, viewB, 1, bytes.Repeat([]byte{2}, NonceLen))
		_, revA := a.Own()
		_, revB := b.Own()
		if revA == nil || revB == nil || a.Code() == "" || b.Code() == "" {
			t.Fatalf("attempt %d: the honest round did not complete", n)
		}
		// The relay now knows both victims' nonces: a birthday search
		// over nonces of its own.
		nA, nB := nonceOf(revA), nonceOf(revB)
		vhA, vhB := ViewHash(viewA), ViewHash(viewB)
		seen := map[string][]byte{}
		var x, y []byte
		for i := 0; i < 1<<14 && x == nil; i++ {
			c := sha256.Sum256(fmt.Appendf(nil, "x %d %d", n, i))
			seen[MeetingCodeV2(vhA, Checkpoint{}, []RoundNonce{{annA.ParticipantID, nA}, {fakeB.ParticipantID, c[:]}}, testDigits)] = c[:]
		}
		for j := 0; j < 1<<14 && x == nil; j++ {
			c := sha256.Sum256(fmt.Appendf(nil, "y %d %d", n, j))
			if hit, ok := seen[MeetingCodeV2(vhB, Checkpoint{}, []RoundNonce{{fakeA.ParticipantID, c[:]}, {annB.ParticipantID, nB}}, testDigits)]; ok {
				x, y = hit, c[:]
			}
		}
		if x == nil {
			t.Fatalf("attempt %d: the search found no collision", n)
		}
		play(a, fakeB, viewA, 2, x)
		play(b, fakeA, viewB, 2, y)
		codeA, codeB := a.Code(), b.Code()
		if codeA != "" && codeA == codeB {
			t.Fatalf("attempt %d: the relay chose its nonces after the victims revealed theirs: both read %s", n, codeA)
		}
	}
}
