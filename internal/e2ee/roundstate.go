package e2ee

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"encoding/base64"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// RoundState is one member's side of the verification rounds of a meeting
// (docs/e2ee.md, section 14), without I/O: the caller sends the payloads
// it returns as `verify` messages, feeds it the ones it receives, fetches
// consistency proofs, and shows Code (or "verifying" while it is empty).
//
// Changes of the view are coalesced (rule 1): Change records one and the
// commit for it is owed until the view has been quiet for RoundQuiet, or
// RoundMaxWait after the first change not committed to; moves to a peer's
// round and adopted checkpoints are owed at once. Every commit spends one
// of CommitBurst tokens, given back at CommitRate a second, so that a
// member never sends verify messages faster than the server relays them.
// The caller makes the owed commit with CommitDue at the time Due says.
// While a commit is owed the member neither reveals nor shows a code.
// It is not safe for concurrent use.
type RoundState struct {
	meeting, self string
	device        *ecdsa.PrivateKey
	verifier      note.Verifier // the pinned log key; nil when none is pinned
	digits        int
	now           func() time.Time

	round    uint32
	nonce    []byte
	view     [32]byte                         // the current view (a commit to it may be owed)
	members  map[string]*VerifiedAnnouncement // the view, self included
	cp       Checkpoint                       // the checkpoint of the current view
	commit   []byte                           // own latest commit payload
	pending  []byte                           // a commit made in OnCommit, not yet taken by Pending
	revealed bool
	epochs   int // changes of view
	made     int // own commits: the rounds this member took part in

	// The owed commit (docs/e2ee.md, section 14, rule 1).
	owed        bool      // the latest commit does not name the current view and checkpoint, or a peer of this view leads to a higher round
	urgent      bool      // owed at once: a move to a peer's round, an adopted checkpoint
	first, last time.Time // the changes of view not committed to yet
	tokens      float64   // commits this member may make at once
	filled      time.Time // when tokens was last brought up to date

	commits map[string]*Commit    // latest commit of each peer
	cps     map[string]Checkpoint // the checkpoint of that commit
	reveals map[string][]byte     // nonce opening that commit
	code    string
}

// MaxPeerRound is the highest round a peer's commit may name. Members
// follow a peer to a higher round (docs/e2ee.md, section 14, rule 3): a
// participant that led everyone to the last round a u32 numbers would
// leave the meeting no round for its next epoch, and no code for the rest
// of it. From 2^31 on a meeting still has 2^31 rounds of its own.
const MaxPeerRound = 1 << 31

// The pace of the rounds (docs/e2ee.md, section 14, rule 1; the browser's
// ROUND_QUIET_MS, ROUND_MAX_WAIT_MS, COMMIT_RATE and COMMIT_BURST in
// round.mjs, and the "schedule" of testdata/vectors.json).
const (
	// RoundQuiet is how long a member's view must stay unchanged before
	// it commits to it: joins that come together share one round.
	RoundQuiet = 300 * time.Millisecond
	// RoundMaxWait bounds the wait for a quiet view: under a continuous
	// stream of changes a member still commits this long after the first
	// change it has not committed to.
	RoundMaxWait = 2 * time.Second
	// CommitRate and CommitBurst bound a member's commits (a token
	// bucket): each round costs a commit and at most one reveal, so a
	// member sends at most 2*CommitRate verify messages a second and
	// 2*CommitBurst at once, half the server's budget for them
	// (internal/meeting: 2 a second, 40 at once), which leaves room for
	// messages that the network delays and then delivers together.
	CommitRate  = 1.0
	CommitBurst = 10
)

// NewRoundState starts the rounds of one member of a meeting. verifier is
// the pinned log key (nil: checkpoints are compared, not verified); digits
// is the code length (0: 12). Its clock is time.Now until SetClock.
func NewRoundState(meeting, self string, device *ecdsa.PrivateKey, verifier note.Verifier, digits int) *RoundState {
	return &RoundState{meeting: meeting, self: self, device: device, verifier: verifier, digits: digits, now: time.Now,
		tokens: CommitBurst, commits: map[string]*Commit{}, cps: map[string]Checkpoint{}, reveals: map[string][]byte{}}
}

// SetClock sets the time source of the pace of the rounds.
func (r *RoundState) SetClock(now func() time.Time) { r.now = now }

// Begin records a changed view and commits to it at once, whatever the
// pace (a caller that coalesces changes uses Change and CommitDue); it
// returns the commit to send.
func (r *RoundState) Begin(view []*VerifiedAnnouncement, cp Checkpoint) ([]byte, error) {
	r.Change(view, cp)
	r.spend(r.now())
	return r.commitOwed()
}

// Change records a changed view (own announcement included) with the
// member's trusted checkpoint: a new epoch, whose commit is owed (Due).
// Nothing revealed before is used again: the next round has a fresh
// nonce, even if the view comes back to what it was.
func (r *RoundState) Change(view []*VerifiedAnnouncement, cp Checkpoint) {
	old := r.members
	r.members = map[string]*VerifiedAnnouncement{}
	for _, a := range view {
		r.members[a.ParticipantID] = a
	}
	for id := range r.commits {
		// A member that left, or that announced itself anew (its rounds
		// count again from 1): its commits are of another member.
		if r.members[id] == nil || old[id] == nil || !bytes.Equal(old[id].Body, r.members[id].Body) {
			delete(r.commits, id)
			delete(r.cps, id)
			delete(r.reveals, id)
		}
	}
	r.view = ViewHash(view)
	r.cp = cp
	r.epochs++
	r.code = ""
	now := r.now()
	if !r.owed || r.first.IsZero() {
		r.first = now
	}
	r.owed, r.urgent, r.last = true, false, now
}

// Due reports whether a commit is owed and from when CommitDue makes it.
func (r *RoundState) Due() (time.Time, bool) {
	if !r.owed {
		return time.Time{}, false
	}
	at := r.now()
	if !r.urgent && !r.first.IsZero() {
		at = r.last.Add(RoundQuiet)
		if limit := r.first.Add(RoundMaxWait); limit.Before(at) {
			at = limit
		}
	}
	// And a token for the commit.
	if tokens := r.tokensAt(at); tokens < 1 {
		at = at.Add(time.Duration(math.Ceil((1-tokens)/CommitRate*1000)) * time.Millisecond)
	}
	return at, true
}

// tokensAt returns the commit tokens at time t (not before the last use).
func (r *RoundState) tokensAt(t time.Time) float64 {
	if r.filled.IsZero() || !t.After(r.filled) {
		return r.tokens
	}
	return min(CommitBurst, r.tokens+t.Sub(r.filled).Seconds()*CommitRate)
}

// spend takes a commit token at time t (down to none: Begin commits
// whatever the pace).
func (r *RoundState) spend(t time.Time) {
	r.tokens = max(r.tokensAt(t)-1, 0)
	if t.After(r.filled) {
		r.filled = t
	}
}

// CommitDue makes the owed commit if it is due (Due): a new round with a
// fresh nonce; nil when none is owed or not yet.
func (r *RoundState) CommitDue() ([]byte, error) {
	at, owed := r.Due()
	now := r.now()
	if !owed || at.After(now) {
		return nil, nil
	}
	r.spend(now)
	return r.commitOwed()
}

// commitOwed commits to the current view and checkpoint in the next round.
func (r *RoundState) commitOwed() ([]byte, error) {
	p, err := r.recommit(r.cp, r.nextRound())
	if err != nil {
		return nil, err
	}
	r.owed, r.urgent, r.first, r.last = false, false, time.Time{}, time.Time{}
	return p, nil
}

// CommitCount returns how many commits this member made: the rounds it took
// part in.
func (r *RoundState) CommitCount() int { return r.made }

// nextRound is the round a member moves to for a new commit: past its
// own, and joining the highest round a member already committed to for
// the same view (rounds are the meeting's, not each member's).
func (r *RoundState) nextRound() uint32 {
	next := r.round + 1
	for id, c := range r.commits {
		if r.members[id] != nil && c.View == r.view && c.Round > next {
			next = c.Round
		}
	}
	return next
}

// recommit starts round `round` with a fresh nonce: nothing this member
// revealed before is ever combined with what it receives from now on.
func (r *RoundState) recommit(cp Checkpoint, round uint32) ([]byte, error) {
	if round <= r.round {
		return nil, errors.New("e2ee: no round left in this meeting")
	}
	nonce := make([]byte, NonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	r.round, r.revealed, r.pending = round, false, nil
	r.nonce, r.cp, r.code = nonce, cp, ""
	p, err := SignCommit(r.device, Commit{MeetingID: r.meeting, ParticipantID: r.self, Round: r.round, View: r.view, Checkpoint: cp.Note}, nonce)
	if err != nil {
		return nil, err
	}
	r.commit = p
	r.made++
	return p, nil
}

// Adopt switches to a larger checkpoint the caller verified (consistent
// with the current one): a new round with a fresh nonce is owed at once;
// it returns its commit when a token allows it now (else CommitDue makes
// it later), nil when cp is not larger.
func (r *RoundState) Adopt(cp Checkpoint) ([]byte, error) {
	// A member without a log holds the zero checkpoint, smaller than any.
	larger := cp.Size > r.cp.Size || (r.cp.Origin == "" && cp.Origin != "")
	if !larger || r.members == nil {
		return nil, nil
	}
	r.cp, r.code = cp, ""
	r.owed, r.urgent = true, true
	return r.CommitDue()
}

// Pending returns, once, the commit of a round this member moved to on a
// peer's commit (OnCommit) when a token allowed it at once, for the
// caller to send; nil if none (a move that waits for a token is made by
// CommitDue).
func (r *RoundState) Pending() []byte {
	p := r.pending
	r.pending = nil
	return p
}

// Checkpoint returns the checkpoint of the current round.
func (r *RoundState) Checkpoint() Checkpoint { return r.cp }

// Own returns this member's commit, and its reveal once made (to send
// again after a reconnection).
func (r *RoundState) Own() (commit, reveal []byte) {
	if r.revealed {
		reveal, _ = EncodeReveal(Reveal{MeetingID: r.meeting, ParticipantID: r.self, Round: r.round, Nonce: r.nonce})
	}
	return r.commit, reveal
}

// Epochs returns how many epochs began: each is a change of view.
func (r *RoundState) Epochs() int { return r.epochs }

// OnCommit verifies and keeps a peer's commit. It returns the commit's
// checkpoint when it differs from the round's (the caller must then
// verify consistency and Adopt, or report a split view). A commit of a
// higher round for the same view moves this member to that round with a
// fresh nonce: the caller sends Pending's commit.
func (r *RoundState) OnCommit(from string, payload []byte) (*Checkpoint, error) {
	a := r.members[from]
	if a == nil || from == r.self {
		return nil, fmt.Errorf("e2ee: a commit from %s, who is not in this view", from)
	}
	c, err := VerifyCommit(payload, a)
	if err != nil {
		return nil, err
	}
	if c.Round > MaxPeerRound {
		return nil, fmt.Errorf("e2ee: a commit of %s for round %d, past the rounds a peer may lead to (%d)", from, c.Round, uint32(MaxPeerRound))
	}
	if old := r.commits[from]; old != nil && c.Round <= old.Round {
		return nil, nil // old or repeated
	}
	cp, err := r.openCheckpoint(c.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint in the commit of %s: %w", from, err)
	}
	r.commits[from], r.cps[from] = c, cp
	delete(r.reveals, from)
	r.code = ""
	if c.View == r.view && c.Round > r.round {
		// A member of this view is a round ahead: move to it with a fresh
		// nonce, at once if a token allows (a commit is owed until then,
		// and nothing is revealed). Never keep a revealed nonce for a
		// commit that came after the reveal, or the relay could choose
		// its nonce knowing ours.
		r.owed, r.urgent = true, true
		p, err := r.CommitDue()
		if err != nil {
			return nil, err
		}
		r.pending = p
	}
	if !cp.Equal(r.cp) {
		return &cp, nil
	}
	return nil, nil
}

func (r *RoundState) openCheckpoint(b []byte) (Checkpoint, error) {
	if len(b) == 0 {
		return Checkpoint{}, nil
	}
	if r.verifier != nil {
		return OpenCheckpoint(b, r.verifier)
	}
	return parseCheckpointUnverified(b)
}

// parseCheckpointUnverified reads a signed checkpoint's head without a key
// (a member that pinned no log key can still compare heads).
func parseCheckpointUnverified(b []byte) (Checkpoint, error) {
	text, _, ok := strings.Cut(string(b), "\n\n")
	lines := strings.Split(text, "\n")
	if !ok || len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint", ErrMalformed)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	h, herr := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || herr != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint", ErrMalformed)
	}
	c := Checkpoint{Origin: lines[0], Size: size, Note: b}
	copy(c.Hash[:], h)
	return c, nil
}

// ErrRevealMismatch reports a reveal that does not open its commit.
var ErrRevealMismatch = errors.New("e2ee: a reveal does not open its commit")

// OnReveal keeps a peer's reveal of its latest commit.
func (r *RoundState) OnReveal(from string, payload []byte) error {
	v, err := ParseReveal(payload)
	if err != nil {
		return err
	}
	c := r.commits[from]
	if c == nil || v.ParticipantID != from || v.MeetingID != r.meeting || v.Round != c.Round {
		return nil // for a commit superseded or not seen: ignore
	}
	if !v.Opens(c) {
		return ErrRevealMismatch
	}
	r.reveals[from] = v.Nonce
	return nil
}

// Waiting returns the members whose commit of this round, view and
// checkpoint is missing.
func (r *RoundState) Waiting() []string {
	var out []string
	for id := range r.members {
		if id != r.self && !r.matches(id) {
			out = append(out, id)
		}
	}
	return out
}

// matches reports whether member id's commit is of this round, view and
// checkpoint.
func (r *RoundState) matches(id string) bool {
	c := r.commits[id]
	return c != nil && c.Round == r.round && c.View == r.view && r.cps[id].Equal(r.cp)
}

// complete reports whether every member committed to this round, view
// and checkpoint (Waiting is empty), stopping at the first that did not:
// it runs on every verify message.
func (r *RoundState) complete() bool {
	for id := range r.members {
		if id != r.self && !r.matches(id) {
			return false
		}
	}
	return true
}

// DisagreeingRound reports whether member id's latest commit names
// another view than this member's, and that commit's round (Disagreeing
// for one member, without building the map on every verify message).
func (r *RoundState) DisagreeingRound(id string) (uint32, bool) {
	c := r.commits[id]
	if c == nil || r.members[id] == nil || c.View == r.view {
		return 0, false
	}
	return c.Round, true
}

// Disagreeing returns the members whose latest commit names another view
// than this member's, with the round of that commit: they see another
// list of participants (in transit, or shown by the relay).
func (r *RoundState) Disagreeing() map[string]uint32 {
	out := map[string]uint32{}
	for id, c := range r.commits {
		if r.members[id] != nil && c.View != r.view {
			out[id] = c.Round
		}
	}
	return out
}

// Reveal returns this member's reveal once every member of its view has
// committed to the same round, view and checkpoint, once per round; nil
// before.
func (r *RoundState) Reveal() []byte {
	if r.revealed || r.owed || r.commit == nil || !r.complete() {
		return nil
	}
	r.revealed = true
	_, reveal := r.Own()
	return reveal
}

// Code returns the meeting code once every member's reveal opens its
// matching commit; "" while the round is incomplete ("verifying").
func (r *RoundState) Code() string {
	if !r.revealed || r.owed || !r.complete() {
		return ""
	}
	nonces := []RoundNonce{{ParticipantID: r.self, Nonce: r.nonce}}
	for id := range r.members {
		if id == r.self {
			continue
		}
		n := r.reveals[id]
		if n == nil {
			return ""
		}
		nonces = append(nonces, RoundNonce{ParticipantID: id, Nonce: n})
	}
	if r.code == "" {
		r.code = MeetingCodeV2(r.view, r.cp, nonces, r.digits)
	}
	return r.code
}
