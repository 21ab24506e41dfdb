package e2ee

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The verification round (docs/e2ee.md, section 14): per epoch every member
// commits to a fresh nonce, its view and its log checkpoint, reveals the
// nonce once it holds everyone's commit, and the meeting code hashes the
// view, every nonce and the agreed checkpoint.

const (
	commitTag     = "CCMT"
	revealTag     = "CRVL"
	roundVersion  = 2
	labelView     = "Conclave E2EE v2 view"
	labelNonce    = "Conclave E2EE v2 nonce"
	labelCodeV2   = "Conclave E2EE v2 meeting code"
	NonceLen      = 32 // bytes of a round nonce
	DefaultDigits = 12 // digits of the meeting code
)

// ViewHash hashes a member's view: the verified announcements (its own
// included) sorted by participant id, then body.
func ViewHash(anns []*VerifiedAnnouncement) [32]byte {
	sorted := slices.Clone(anns)
	slices.SortFunc(sorted, func(a, b *VerifiedAnnouncement) int {
		if c := strings.Compare(a.ParticipantID, b.ParticipantID); c != 0 {
			return c
		}
		return bytes.Compare(a.Body, b.Body)
	})
	h := sha256.New()
	h.Write([]byte(labelView))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(sorted)))
	h.Write(n[:])
	for _, a := range sorted {
		binary.BigEndian.PutUint32(n[:], uint32(len(a.Body)))
		h.Write(n[:])
		h.Write(a.Body)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// NonceHash binds a nonce to its meeting, participant and round.
func NonceHash(meeting, participant string, round uint32, nonce []byte) [32]byte {
	w := writer{}
	w.raw([]byte(labelNonce))
	w.str16(meeting)
	w.str16(participant)
	w.u32(round)
	w.raw(nonce)
	return sha256.Sum256(w.b)
}

// Commit is a member's signed commitment for one round.
type Commit struct {
	MeetingID     string
	ParticipantID string
	Round         uint32
	View          [32]byte
	Checkpoint    []byte // the signed note of the member's checkpoint
	NonceHash     [32]byte

	Raw       []byte
	Body      []byte
	Signature []byte
}

func encodeCommitBody(c *Commit) ([]byte, error) {
	switch {
	case c.MeetingID == "" || len(c.MeetingID) > maxIDLen || c.ParticipantID == "" || len(c.ParticipantID) > maxIDLen:
		return nil, errors.New("e2ee: commit needs meeting and participant ids of 1-128 bytes")
	case len(c.Checkpoint) > MaxCheckpointLen:
		return nil, errors.New("e2ee: commit checkpoint too long")
	case c.Round == 0:
		return nil, errors.New("e2ee: rounds count from 1")
	}
	w := writer{}
	w.raw([]byte(commitTag))
	w.u8(roundVersion)
	w.str16(c.MeetingID)
	w.str16(c.ParticipantID)
	w.u32(c.Round)
	w.raw(c.View[:])
	w.bytes16(c.Checkpoint)
	w.raw(c.NonceHash[:])
	return w.b, nil
}

// SignCommit encodes and signs a commit for the nonce; it sets c.NonceHash
// and returns the payload (body || signature).
func SignCommit(device *ecdsa.PrivateKey, c Commit, nonce []byte) ([]byte, error) {
	if len(nonce) != NonceLen {
		return nil, errors.New("e2ee: a round nonce is 32 bytes")
	}
	c.NonceHash = NonceHash(c.MeetingID, c.ParticipantID, c.Round, nonce)
	body, err := encodeCommitBody(&c)
	if err != nil {
		return nil, err
	}
	sig, err := Sign(device, body)
	if err != nil {
		return nil, err
	}
	return append(body, sig...), nil
}

// ParseCommit parses a commit without checking its signature.
func ParseCommit(b []byte) (*Commit, error) {
	r := reader{b: b}
	tag := r.take(4)
	version := r.u8()
	if r.bad || string(tag) != commitTag || version != roundVersion {
		return nil, fmt.Errorf("%w: not a commit", ErrMalformed)
	}
	var c Commit
	c.MeetingID = r.str16(maxIDLen)
	c.ParticipantID = r.str16(maxIDLen)
	c.Round = r.u32()
	copy(c.View[:], r.take(32))
	c.Checkpoint = r.bytes16(MaxCheckpointLen)
	copy(c.NonceHash[:], r.take(32))
	bodyLen := len(b) - len(r.b)
	c.Signature = r.take(SignatureLen)
	if !r.done() || c.MeetingID == "" || c.ParticipantID == "" || c.Round == 0 {
		return nil, fmt.Errorf("%w: commit", ErrMalformed)
	}
	c.Raw, c.Body = b, b[:bodyLen]
	return &c, nil
}

// VerifyCommit parses a commit and checks its signature by the device key
// of the member's verified announcement and its meeting and participant.
func VerifyCommit(b []byte, a *VerifiedAnnouncement) (*Commit, error) {
	c, err := ParseCommit(b)
	if err != nil {
		return nil, err
	}
	if !Verify(a.DevicePublicKey, c.Body, c.Signature) {
		return nil, fmt.Errorf("commit: %w", ErrSignature)
	}
	if c.MeetingID != a.MeetingID || c.ParticipantID != a.ParticipantID {
		return nil, errors.New("e2ee: commit of another meeting or participant")
	}
	return c, nil
}

// Reveal discloses a round's nonce.
type Reveal struct {
	MeetingID     string
	ParticipantID string
	Round         uint32
	Nonce         []byte
}

// EncodeReveal returns "CRVL" | u8(2) | meeting str16 | participant str16 |
// round u32 | nonce (32).
func EncodeReveal(r Reveal) ([]byte, error) {
	if len(r.Nonce) != NonceLen || r.MeetingID == "" || r.ParticipantID == "" || len(r.MeetingID) > maxIDLen || len(r.ParticipantID) > maxIDLen {
		return nil, errors.New("e2ee: malformed reveal")
	}
	w := writer{}
	w.raw([]byte(revealTag))
	w.u8(roundVersion)
	w.str16(r.MeetingID)
	w.str16(r.ParticipantID)
	w.u32(r.Round)
	w.raw(r.Nonce)
	return w.b, nil
}

// ParseReveal parses a reveal.
func ParseReveal(b []byte) (*Reveal, error) {
	r := reader{b: b}
	tag := r.take(4)
	version := r.u8()
	if r.bad || string(tag) != revealTag || version != roundVersion {
		return nil, fmt.Errorf("%w: not a reveal", ErrMalformed)
	}
	var v Reveal
	v.MeetingID = r.str16(maxIDLen)
	v.ParticipantID = r.str16(maxIDLen)
	v.Round = r.u32()
	v.Nonce = r.take(NonceLen)
	if !r.done() || v.MeetingID == "" || v.ParticipantID == "" {
		return nil, fmt.Errorf("%w: reveal", ErrMalformed)
	}
	return &v, nil
}

// Opens reports whether the reveal opens commit c.
func (v *Reveal) Opens(c *Commit) bool {
	if v.MeetingID != c.MeetingID || v.ParticipantID != c.ParticipantID || v.Round != c.Round {
		return false
	}
	return NonceHash(v.MeetingID, v.ParticipantID, v.Round, v.Nonce) == c.NonceHash
}

// IsCommit and IsReveal tell a verify payload's kind by its tag.
func IsCommit(b []byte) bool { return bytes.HasPrefix(b, []byte(commitTag)) }

// IsReveal reports whether b starts like a reveal.
func IsReveal(b []byte) bool { return bytes.HasPrefix(b, []byte(revealTag)) }

// RoundNonce is one member's revealed nonce, for the code.
type RoundNonce struct {
	ParticipantID string
	Nonce         []byte
}

// MeetingCodeV2 returns the meeting code of a completed round: SHA-256 of
// the label, the view hash, the agreed checkpoint (size, root hash) and
// every member's (participant id, nonce) sorted by participant id; the
// first 8 bytes as a big-endian integer mod 10^digits, in groups of 3
// digits (digits 0 means 12; shorter codes are for tests only).
func MeetingCodeV2(view [32]byte, cp Checkpoint, nonces []RoundNonce, digits int) string {
	if digits <= 0 || digits > 18 {
		digits = DefaultDigits
	}
	sorted := slices.Clone(nonces)
	slices.SortFunc(sorted, func(a, b RoundNonce) int { return strings.Compare(a.ParticipantID, b.ParticipantID) })
	w := writer{}
	w.raw([]byte(labelCodeV2))
	w.raw(view[:])
	w.u64(uint64(cp.Size))
	w.raw(cp.Hash[:])
	for _, n := range sorted {
		w.str16(n.ParticipantID)
		w.raw(n.Nonce)
	}
	sum := sha256.Sum256(w.b)
	return formatCode(binary.BigEndian.Uint64(sum[:8]), digits)
}

func formatCode(v uint64, digits int) string {
	mod := uint64(1)
	for range digits {
		mod *= 10
	}
	d := fmt.Sprintf("%0*d", digits, v%mod)
	var sb strings.Builder
	for i := 0; i < len(d); i += 3 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(d[i:min(i+3, len(d))])
	}
	return sb.String()
}
