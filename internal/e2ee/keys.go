package e2ee

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"conclave/internal/clock"
)

// Labels of the HKDF-SHA-256 derivations from a sender key.
const (
	labelRatchet = "Conclave E2EE v1 ratchet"
	labelChat    = "Conclave E2EE v1 chat"
)

// KeyLen is the length of sender keys, file keys and pairwise keys.
const KeyLen = 32

// MaxRatchetAhead is how many ratchet steps a receiver derives on its own
// when a frame names a step it does not hold yet.
const MaxRatchetAhead = 16

// DefaultRetention is how long a receiver keeps a sender's older keys once
// a newer one has decrypted something.
const DefaultRetention = 5 * time.Second

// maxRingEntries bounds the keys a KeyRing holds for one sender.
const maxRingEntries = 8

// ErrUnknownKey is returned when no key (held or derivable) matches a KID:
// the frame was sent under a key that has not arrived yet, or one that has
// already been dropped.
var ErrUnknownKey = errors.New("e2ee: no key for this KID")

// SenderKey is one version of a participant's media sender key. Index is
// the sender index from its announcement, Generation counts fresh random
// keys (mod 256), Step counts ratchet steps within a generation.
type SenderKey struct {
	Index      uint16
	Generation uint8
	Step       uint8
	Key        [KeyLen]byte
}

// KID returns the SFrame KID of this key version:
// index<<16 | generation<<8 | step.
func (k SenderKey) KID() uint64 {
	return uint64(k.Index)<<16 | uint64(k.Generation)<<8 | uint64(k.Step)
}

// SplitKID is the inverse of SenderKey.KID. ok is false for a KID above 32
// bits, which Conclave never sends.
func SplitKID(kid uint64) (index uint16, generation, step uint8, ok bool) {
	if kid>>32 != 0 {
		return 0, 0, 0, false
	}
	return uint16(kid >> 16), uint8(kid >> 8), uint8(kid), true
}

// NewSenderKey draws a fresh random key at step 0 of the given generation.
func NewSenderKey(index uint16, generation uint8) (SenderKey, error) {
	k := SenderKey{Index: index, Generation: generation}
	if _, err := rand.Read(k.Key[:]); err != nil {
		return SenderKey{}, err
	}
	return k, nil
}

// Ratchet returns the next step of the key: key' = HKDF-SHA-256(ikm = key,
// salt = "", info = "Conclave E2EE v1 ratchet", 32). It fails at step 255;
// the sender then draws a fresh generation instead (Sender.Ratchet does).
func (k SenderKey) Ratchet() (SenderKey, error) {
	if k.Step == 255 {
		return SenderKey{}, errors.New("e2ee: ratchet step 255 is the last; rotate the key")
	}
	next, err := hkdf.Key(sha256.New, k.Key[:], nil, labelRatchet, KeyLen)
	if err != nil {
		return SenderKey{}, err
	}
	n := SenderKey{Index: k.Index, Generation: k.Generation, Step: k.Step + 1}
	copy(n.Key[:], next)
	return n, nil
}

// ChatKey returns the key that encrypts this sender's chat messages under
// this key version: HKDF-SHA-256(ikm = key, salt = "", info = "Conclave E2EE
// v1 chat", 32).
func (k SenderKey) ChatKey() ([KeyLen]byte, error) {
	var out [KeyLen]byte
	b, err := hkdf.Key(sha256.New, k.Key[:], nil, labelChat, KeyLen)
	if err != nil {
		return out, err
	}
	copy(out[:], b)
	return out, nil
}

// KeyRingConfig sets a KeyRing's retention and clock.
type KeyRingConfig struct {
	// Retention is how long older keys stay once a newer key was used;
	// zero means DefaultRetention.
	Retention time.Duration
	// Clock tells when retained keys expire; nil means clock.System.
	Clock clock.Clock
}

type ringEntry struct {
	key     SenderKey
	sf      *SFrameKey
	expires time.Time // zero: not expiring (no newer key used yet)
}

// KeyRing holds the key versions a receiver knows for one sender. A key
// stays until a key added after it has decrypted something, then for the
// retention time; at most 8 keys are kept. It is safe for concurrent use.
type KeyRing struct {
	mu        sync.Mutex
	index     uint16
	retention time.Duration
	clock     clock.Clock
	entries   []*ringEntry // in the order they were added or derived
}

// NewKeyRing makes an empty ring for the sender with this sender index.
func NewKeyRing(senderIndex uint16, cfg KeyRingConfig) *KeyRing {
	r := &KeyRing{index: senderIndex, retention: cfg.Retention, clock: clock.Or(cfg.Clock)}
	if r.retention <= 0 {
		r.retention = DefaultRetention
	}
	return r
}

// Add installs a key version received in a key message. A key for another
// sender index is refused.
func (r *KeyRing) Add(k SenderKey) error {
	if k.Index != r.index {
		return fmt.Errorf("e2ee: key for sender %d given to the ring of sender %d", k.Index, r.index)
	}
	sf, err := DeriveSFrameKey(k.Key[:], k.KID())
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge()
	for i, e := range r.entries {
		if e.key.Generation == k.Generation && e.key.Step == k.Step {
			// The generation wrapped around: the new key replaces the old.
			r.entries = append(r.entries[:i], r.entries[i+1:]...)
			break
		}
	}
	r.insert(&ringEntry{key: k, sf: sf})
	return nil
}

func (r *KeyRing) insert(e *ringEntry) {
	if len(r.entries) >= maxRingEntries {
		r.entries = append(r.entries[:0], r.entries[1:]...)
	}
	r.entries = append(r.entries, e)
}

func (r *KeyRing) purge() {
	now := r.clock.Now()
	kept := r.entries[:0]
	for _, e := range r.entries {
		if e.expires.IsZero() || now.Before(e.expires) {
			kept = append(kept, e)
		}
	}
	clear(r.entries[len(kept):])
	r.entries = kept
}

// lookup finds the entry for (generation, step), or derives a candidate by
// ratcheting the newest entry of that generation with a lower step. A
// derived candidate is not stored until commit.
func (r *KeyRing) lookup(generation, step uint8) (e *ringEntry, derived bool, err error) {
	r.purge()
	var base *ringEntry
	for _, c := range r.entries {
		if c.key.Generation != generation {
			continue
		}
		if c.key.Step == step {
			return c, false, nil
		}
		if c.key.Step < step && (base == nil || c.key.Step > base.key.Step) {
			base = c
		}
	}
	if base == nil || int(step)-int(base.key.Step) > MaxRatchetAhead {
		return nil, false, ErrUnknownKey
	}
	k := base.key
	for k.Step < step {
		if k, err = k.Ratchet(); err != nil {
			return nil, false, err
		}
	}
	sf, err := DeriveSFrameKey(k.Key[:], k.KID())
	if err != nil {
		return nil, false, err
	}
	return &ringEntry{key: k, sf: sf}, true, nil
}

// used records that e authenticated a message: a derived e is stored, and
// the keys added before e start their retention time.
func (r *KeyRing) used(e *ringEntry, derived bool) {
	if derived {
		r.insert(e)
	}
	deadline := r.clock.Now().Add(r.retention)
	for _, c := range r.entries {
		if c == e {
			return
		}
		if c.expires.IsZero() {
			c.expires = deadline
		}
	}
}

// Key returns the key version (generation, step), deriving it by ratchet
// if needed, without storing a derived one. It is for tests and tools.
func (r *KeyRing) Key(generation, step uint8) (SenderKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, _, err := r.lookup(generation, step)
	if err != nil {
		return SenderKey{}, err
	}
	return e.key, nil
}

// Awaits reports whether a frame of this key generation may yet get its
// key from a key message: the ring holds no key of the generation, and
// the generation is newer than every one it holds (generations count
// modulo 256; "newer" is up to 127 ahead), or the ring is empty. A frame
// of an older generation (its key expired) or one ratcheted too far ahead
// of a held generation never will.
func (r *KeyRing) Awaits(generation uint8) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge()
	for _, e := range r.entries {
		if d := generation - e.key.Generation; d == 0 || d >= 128 {
			return false
		}
	}
	return true
}

// Len returns the number of key versions held.
func (r *KeyRing) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge()
	return len(r.entries)
}
