// Package ticket is the admission ticket with which a signed-in account
// enters a meeting on a conference node (docs/cluster.md, "Signed-in
// accounts on conference nodes").
//
// Conference nodes hold no accounts and no sessions: when the management
// node sends a signed-in participant to another node (a redirect of the
// node selection policy), it first lets its own gate decide the
// participant's role in the room, then signs that decision into a
// ticket that the client carries to the node. The node checks it offline
// with the management node's public key, which it has with the
// configuration (internal/nodeconf).
//
// A ticket is the text
//
//	"ct1." base64url(payload) "." base64url(signature)
//
// where payload is a JSON object (Claims) and signature is ECDSA P-384
// with SHA-384 (ASN.1 DER) over the domain string "conclave admission
// ticket v1\n" followed by the payload's bytes, as sent. ECDSA P-384 is
// the curve of every node-to-node key of the cluster, and in the
// approved set (no EdDSA). A ticket is valid for one room, on one node,
// about a minute, once.
package ticket

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"conclave/internal/clock"
)

// Prefix starts every ticket (the format's version).
const Prefix = "ct1."

// MaxLen bounds a ticket's text; longer ones are malformed.
const MaxLen = 2048

// TTL is how long a ticket is valid after it is issued.
const TTL = time.Minute

// Skew is the difference between the management node's clock and a
// node's that a ticket tolerates at each end of its life.
const Skew = 15 * time.Second

// maxLife bounds exp-iat: a longer-lived ticket is malformed, whoever
// signed it.
const maxLife = 5 * time.Minute

// domain separates ticket signatures from any other use of the key.
const domain = "conclave admission ticket v1\n"

// Roles a ticket may give (the wire names of docs/protocol.md).
const (
	RoleHost        = "host"
	RoleParticipant = "participant"
	RoleGuest       = "guest"
)

// Account is the signed-in account a ticket admits.
type Account struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Name     string `json:"name,omitempty"` // display name
}

// Claims is what a ticket says.
type Claims struct {
	// Room is the room's alias.
	Room string `json:"room"`
	// Meeting is the id of the meeting in progress in the room when the
	// ticket was issued; empty when none was.
	Meeting string `json:"meeting,omitempty"`
	// Node is the name of the node the ticket is for.
	Node    string  `json:"node"`
	Account Account `json:"account"`
	// Role is what the management node's gate decided: host,
	// participant or guest.
	Role string `json:"role"`
	// Issued and Expires are Unix times in seconds.
	Issued  int64 `json:"iat"`
	Expires int64 `json:"exp"`
	// ID is 16 random bytes in base64url: the node admits it once.
	ID string `json:"jti"`
}

// Reasons for refusing a ticket (Error.Reason).
const (
	ReasonMalformed   = "malformed"
	ReasonForged      = "forged"
	ReasonNoKey       = "no-key"
	ReasonOtherNode   = "other-node"
	ReasonOtherRoom   = "other-room"
	ReasonExpired     = "expired"
	ReasonNotYetValid = "not-yet-valid"
	ReasonReplayed    = "replayed"
)

// Error is a refused ticket: Reason is one of the Reason constants,
// Message a sentence for the person.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return "admission ticket " + e.Reason + ": " + e.Message }

func refuse(reason, msg string) error { return &Error{Reason: reason, Message: msg} }

var errMalformed = refuse(ReasonMalformed, "This sign-in pass is not valid. Join again from the meeting link.")

// Parse reads a ticket's text without checking its signature: the
// claims, the payload and the signature as sent. Every ticket is checked
// by Verifier.Verify; Parse is the part of it that reads untrusted input.
func Parse(text string) (Claims, []byte, []byte, error) {
	if len(text) > MaxLen || !strings.HasPrefix(text, Prefix) {
		return Claims{}, nil, nil, errMalformed
	}
	p64, s64, ok := strings.Cut(text[len(Prefix):], ".")
	if !ok || p64 == "" || s64 == "" {
		return Claims{}, nil, nil, errMalformed
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(p64)
	if err != nil {
		return Claims{}, nil, nil, errMalformed
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(s64)
	if err != nil {
		return Claims{}, nil, nil, errMalformed
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return Claims{}, nil, nil, errMalformed
	}
	if _, err := dec.Token(); err == nil {
		return Claims{}, nil, nil, errMalformed
	}
	if err := c.check(); err != nil {
		return Claims{}, nil, nil, errMalformed
	}
	return c, payload, sig, nil
}

// check validates the claims' form.
func (c Claims) check() error {
	text := func(s string, max int) bool {
		return s != "" && len(s) <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
	}
	switch {
	case !text(c.Room, 64), !text(c.Node, 64), !text(c.Account.Username, 256):
		return errors.New("room, node and account are required")
	case c.Meeting != "" && !text(c.Meeting, 64):
		return errors.New("bad meeting")
	case c.Account.Name != "" && !text(c.Account.Name, 256):
		return errors.New("bad name")
	case c.Account.ID <= 0:
		return errors.New("bad account id")
	case c.Role != RoleHost && c.Role != RoleParticipant && c.Role != RoleGuest:
		return errors.New("bad role")
	case c.Issued <= 0 || c.Expires <= c.Issued || c.Expires-c.Issued > int64(maxLife/time.Second):
		return errors.New("bad lifetime")
	}
	id, err := base64.RawURLEncoding.Strict().DecodeString(c.ID)
	if err != nil || len(id) != 16 {
		return errors.New("bad id")
	}
	return nil
}

func digest(payload []byte) []byte {
	h := sha512.New384()
	h.Write([]byte(domain))
	h.Write(payload)
	return h.Sum(nil)
}

// Issuer signs tickets: the management node's.
type Issuer struct {
	key   *ecdsa.PrivateKey
	clock clock.Clock
	pub   []byte
}

// NewIssuer returns an issuer signing with key (P-384), dating tickets
// with clk (nil: the system clock).
func NewIssuer(key *ecdsa.PrivateKey, clk clock.Clock) (*Issuer, error) {
	if key == nil || key.Curve != elliptic.P384() {
		return nil, errors.New("admission tickets are signed with an ECDSA P-384 key")
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Issuer{key: key, clock: clock.Or(clk), pub: pub}, nil
}

// PublicKey is the issuer's public key (PKIX, DER), which the nodes
// verify tickets with.
func (i *Issuer) PublicKey() []byte { return bytes.Clone(i.pub) }

// Issue fills in c's dates and id and returns the signed ticket.
func (i *Issuer) Issue(c Claims) (string, error) {
	now := i.clock.Now()
	c.Issued = now.Unix()
	c.Expires = now.Add(TTL).Unix()
	id := make([]byte, 16)
	rand.Read(id)
	c.ID = base64.RawURLEncoding.EncodeToString(id)
	if err := c.check(); err != nil {
		return "", fmt.Errorf("admission ticket: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sig, err := i.key.Sign(rand.Reader, digest(payload), crypto.SHA384)
	if err != nil {
		return "", fmt.Errorf("sign an admission ticket: %w", err)
	}
	text := Prefix + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
	if len(text) > MaxLen {
		return "", errors.New("admission ticket: too long")
	}
	return text, nil
}

// Verifier checks tickets on a node.
type Verifier struct {
	self    string
	key     func() []byte
	clock   clock.Clock
	started time.Time

	mu     sync.Mutex
	seen   map[string]time.Time // ticket id -> when it can be forgotten
	keyDER []byte
	pub    *ecdsa.PublicKey
}

// NewVerifier returns the verifier of the node called self. key returns
// the issuer's current public key (PKIX, DER; nil while the node has
// none). Tickets issued before the verifier was made are refused: the
// ids it saw before a restart are forgotten, so a ticket used then must
// not be used again.
func NewVerifier(self string, key func() []byte, clk clock.Clock) *Verifier {
	clk = clock.Or(clk)
	return &Verifier{self: self, key: key, clock: clk, started: clk.Now(), seen: map[string]time.Time{}}
}

// publicKey parses the issuer's key, once per key.
func (v *Verifier) publicKey() *ecdsa.PublicKey {
	der := v.key()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pub != nil && bytes.Equal(der, v.keyDER) {
		return v.pub
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil
	}
	v.keyDER, v.pub = bytes.Clone(der), pub
	return pub
}

// Verify checks a ticket presented to enter room on this node and
// returns its claims. It refuses, with an *Error, a ticket that is
// malformed, not signed by the issuer, for another node or room,
// expired, not yet valid, or already used; a ticket it accepts is used.
func (v *Verifier) Verify(text, room string) (Claims, error) {
	c, payload, sig, err := Parse(text)
	if err != nil {
		return Claims{}, err
	}
	pub := v.publicKey()
	if pub == nil {
		return Claims{}, refuse(ReasonNoKey, "This node cannot check sign-in passes yet (it has not reached the management node). Join from the meeting link on the management node, or try again in a moment.")
	}
	if !ecdsa.VerifyASN1(pub, digest(payload), sig) {
		return Claims{}, refuse(ReasonForged, "This sign-in pass is not valid. Join again from the meeting link.")
	}
	if c.Node != v.self {
		return Claims{}, refuse(ReasonOtherNode, "This sign-in pass is for another server of the cluster. Join again from the meeting link.")
	}
	if !strings.EqualFold(c.Room, room) {
		return Claims{}, refuse(ReasonOtherRoom, "This sign-in pass is for another meeting. Join again from the meeting link.")
	}
	now := v.clock.Now()
	issued, expires := time.Unix(c.Issued, 0), time.Unix(c.Expires, 0)
	if !now.Before(expires.Add(Skew)) {
		return Claims{}, refuse(ReasonExpired, "This sign-in pass has expired. Join again from the meeting link.")
	}
	if now.Add(Skew).Before(issued) || issued.Before(v.started.Truncate(time.Second)) {
		return Claims{}, refuse(ReasonNotYetValid, "This sign-in pass is not valid on this server now (its clock differs, or it restarted). Join again from the meeting link.")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, until := range v.seen {
		if now.After(until) {
			delete(v.seen, id)
		}
	}
	if _, used := v.seen[c.ID]; used {
		return Claims{}, refuse(ReasonReplayed, "This sign-in pass was used already. Join again from the meeting link.")
	}
	v.seen[c.ID] = expires.Add(Skew)
	return c, nil
}
