package secure

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"errors"
	"log/slog"
	"time"

	"conclave/internal/clock"
	"conclave/internal/e2ee"
)

// Default timings of the key schedule (docs/e2ee.md, section 6).
const (
	// DefaultRotationDebounce is how long after a leave a sender waits
	// before it rotates, so that leaves that come together cost one
	// rotation.
	DefaultRotationDebounce = 100 * time.Millisecond
	// DefaultSwitchDelay is how long a sender keeps encrypting with its old
	// key after sending a rotated one, so that receivers usually have the
	// new key before its first frame.
	DefaultSwitchDelay = 50 * time.Millisecond
	// DefaultKeyWait is how long frames of a key generation newer than
	// any a receiver holds wait for the sender's key message (it travels
	// over the signaling relay, the frames over media), counted from the
	// first such frame.
	DefaultKeyWait = 500 * time.Millisecond
	// DefaultKeyRequestAfter is how long frames of a verified participant
	// may fail for lack of a key before the receiver asks for it.
	DefaultKeyRequestAfter = 2 * time.Second
	// AnnounceGrace is how long a participant the server lists may go
	// without a verified announcement before a warning says it is not
	// end-to-end (the browser's ANNOUNCE_GRACE_MS).
	AnnounceGrace = 10 * time.Second
	// resendInterval bounds how often a key request is answered per peer
	// (the browser's KEY_REQUEST_INTERVAL_MS).
	resendInterval = 2 * time.Second
)

// Config sets up a Session.
type Config struct {
	// Device is this device's long-term ECDSA P-256 key. Required.
	Device *ecdsa.PrivateKey
	// Credential, when set, is the organisation's credential for Device
	// (POST /api/e2ee/credential); UserID must then be its user id.
	// Guests have neither.
	Credential []byte
	UserID     string
	// Name is the display name put in the announcement.
	Name string
	// OrgKey is the pinned organisation E2EE CA key; nil when none is
	// pinned, or when the server's key changed (then nobody is certified).
	OrgKey *ecdsa.PublicKey
	// OrgName is the organisation's name, shown as "certified by <OrgName>".
	OrgName string
	// RequireCertified sends keys only to participants whose credential
	// verified: guests and injected participants then get nothing.
	RequireCertified bool
	// Log is the transparency log monitor (docs/e2ee.md, section 13): a
	// credential counts only once the log holds it, revocations in it
	// remove participants, and its checkpoint enters the meeting code.
	// Without it nobody is shown as certified.
	Log *LogMonitor
	// CodeDigits is the length of the meeting code; 0 means 12. Shorter
	// codes exist for tests of the relay's search only.
	CodeDigits int

	// Timings; zero means the default.
	RotationDebounce time.Duration
	SwitchDelay      time.Duration
	KeyRequestAfter  time.Duration
	// KeyWait: zero means DefaultKeyWait; negative drops frames without
	// a key at once.
	KeyWait time.Duration
	// Retention is how long a receiver keeps older keys (e2ee.KeyRing).
	Retention time.Duration
	// Clock is the time source of the debounce before a rotation, the
	// delay before switching to a rotated key, key retention and key
	// requests; nil means clock.System.
	Clock clock.Clock

	// Logger receives the session's logs (never key material); nil
	// discards them.
	Logger *slog.Logger
	// OnNotice receives what a person should see: meeting code changes,
	// participants and their certification, verification, warnings. It is
	// called one notice at a time, in order; it may call the Session's
	// accessors but must not block.
	OnNotice func(Notice)
	// Observer sees key material. It exists for tests (proving that a
	// removed participant cannot decrypt, that no key reaches a log);
	// leave it nil anywhere else.
	Observer func(KeyEvent)
}

func (c *Config) check() error {
	if c.Device == nil {
		return errors.New("secure: a device key is required")
	}
	if (len(c.Credential) == 0) != (c.UserID == "") {
		return errors.New("secure: a credential and its user id go together")
	}
	if c.RotationDebounce <= 0 {
		c.RotationDebounce = DefaultRotationDebounce
	}
	if c.SwitchDelay <= 0 {
		c.SwitchDelay = DefaultSwitchDelay
	}
	if c.KeyWait == 0 {
		c.KeyWait = DefaultKeyWait
	}
	if c.KeyRequestAfter <= 0 {
		c.KeyRequestAfter = DefaultKeyRequestAfter
	}
	if c.Retention <= 0 {
		c.Retention = e2ee.DefaultRetention
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// KeyEventKind says what a KeyEvent reports.
type KeyEventKind int

// Kinds of key events.
const (
	// Ephemeral: this session drew its ECDH key for a meeting (ECDH).
	Ephemeral KeyEventKind = iota + 1
	// OwnKey: this session's sender key changed or a rotated key was
	// drawn (Key; Pending when not used yet).
	OwnKey
	// Switched: this session now encrypts with Key.
	Switched
	// PeerKey: a key message from Participant opened (Key).
	PeerKey
	// FirstDecrypt: the first frame of Participant under key version Key
	// decrypted (Key holds only index, generation and step).
	FirstDecrypt
)

// KeyEvent is what an Observer sees.
type KeyEvent struct {
	Kind        KeyEventKind
	Participant string // the peer, or this session's own id
	Key         e2ee.SenderKey
	Pending     bool
	ECDH        *ecdh.PrivateKey
	At          time.Time
}
