package e2ee

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Codec names the media codec of a frame; it decides the clear prefix.
type Codec uint8

// The codecs Conclave sends.
const (
	CodecOpus Codec = iota + 1
	CodecVP8
	CodecVP9
	CodecH264 // not supported yet: its NAL headers must stay clear
)

// ErrUnsupportedCodec is returned for a codec without a clear-prefix rule.
var ErrUnsupportedCodec = errors.New("e2ee: codec not supported for frame encryption")

// ErrCounterExhausted is returned when a sender key has encrypted MaxCounter
// frames; the caller must rotate the key.
var ErrCounterExhausted = errors.New("e2ee: frame counter exhausted; rotate the sender key")

// MaxCounter is the last SFrame CTR a Sender uses under one key version.
const MaxCounter = 1<<48 - 1

// CodecFromMimeType maps a WebRTC MIME type ("video/VP8", "audio/opus") to
// a Codec.
func CodecFromMimeType(mime string) (Codec, error) {
	switch strings.ToLower(mime) {
	case "audio/opus":
		return CodecOpus, nil
	case "video/vp8":
		return CodecVP8, nil
	case "video/vp9":
		return CodecVP9, nil
	case "video/h264":
		return CodecH264, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnsupportedCodec, mime)
}

// String returns the codec's lower-case name.
func (c Codec) String() string {
	switch c {
	case CodecOpus:
		return "opus"
	case CodecVP8:
		return "vp8"
	case CodecVP9:
		return "vp9"
	case CodecH264:
		return "h264"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ClearPrefix returns how many leading bytes of frame stay in the clear:
// VP8 key frame (bit 0 of byte 0 is 0) 10, other VP8 frames 1, VP9 and Opus
// 0. The same rule applies to the plaintext and to the encrypted frame,
// since the prefix is copied unchanged. A frame shorter than its prefix is
// refused.
func (c Codec) ClearPrefix(frame []byte) (int, error) {
	var n int
	switch c {
	case CodecOpus, CodecVP9:
		return 0, nil
	case CodecVP8:
		if len(frame) == 0 {
			return 0, fmt.Errorf("%w: empty VP8 frame", ErrMalformed)
		}
		n = 1
		if frame[0]&1 == 0 {
			n = 10
		}
	default:
		return 0, fmt.Errorf("%w: %v", ErrUnsupportedCodec, c)
	}
	if len(frame) < n {
		return 0, fmt.Errorf("%w: %v frame of %d bytes is shorter than its clear prefix", ErrMalformed, c, len(frame))
	}
	return n, nil
}

// Sender encrypts one participant's outgoing frames under its current
// sender key. It is safe for concurrent use.
type Sender struct {
	mu      sync.Mutex
	key     SenderKey
	sf      *SFrameKey
	ctr     uint64 // next SFrame CTR under key
	chatSeq uint64 // last chat sequence number used
}

// NewSender starts a sender with key k (usually NewSenderKey(index, 0)).
func NewSender(k SenderKey) (*Sender, error) {
	s := &Sender{}
	if err := s.setKey(k); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sender) setKey(k SenderKey) error {
	sf, err := DeriveSFrameKey(k.Key[:], k.KID())
	if err != nil {
		return err
	}
	s.key, s.sf, s.ctr = k, sf, 0
	return nil
}

// Key returns the current key version: what to send in key messages.
func (s *Sender) Key() SenderKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// Ratchet moves to the next ratchet step (a participant joined) and returns
// the new key, to be sent to the newcomer only. Other receivers follow by
// themselves when they see the new step in the KID. At step 255 it rotates
// instead and reports fresh = true: the new key must then go to everyone.
func (s *Sender) Ratchet() (k SenderKey, fresh bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key.Step == 255 {
		k, err = s.rotate()
		return k, true, err
	}
	if k, err = s.key.Ratchet(); err != nil {
		return SenderKey{}, false, err
	}
	return k, false, s.setKey(k)
}

// Rotate draws a fresh random key of the next generation (a participant
// left) and returns it, to be sent to every remaining participant.
func (s *Sender) Rotate() (SenderKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotate()
}

func (s *Sender) rotate() (SenderKey, error) {
	k, err := NewSenderKey(s.key.Index, s.key.Generation+1)
	if err != nil {
		return SenderKey{}, err
	}
	return k, s.setKey(k)
}

// EncryptFrame appends the encrypted form of frame to dst and returns it:
// clear prefix || SFrame header || ciphertext || tag, with the clear prefix
// as SFrame metadata (AAD = header || prefix). dst must not overlap frame.
func (s *Sender) EncryptFrame(codec Codec, frame, dst []byte) ([]byte, error) {
	n, err := codec.ClearPrefix(frame)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	ctr := s.ctr
	if ctr > MaxCounter {
		s.mu.Unlock()
		return nil, ErrCounterExhausted
	}
	s.ctr++
	sf := s.sf
	s.mu.Unlock()
	dst = append(dst, frame[:n]...)
	return sf.Seal(dst, ctr, frame[:n], frame[n:]), nil
}

// Receiver decrypts the frames and chat messages of one remote sender,
// whose sender index it knows from the sender's verified announcement. It
// is safe for concurrent use.
type Receiver struct {
	ring    *KeyRing
	mu      sync.Mutex
	chatSeq uint64 // last chat sequence number accepted
}

// NewReceiver makes a receiver for the sender with this sender index.
func NewReceiver(senderIndex uint16, cfg KeyRingConfig) *Receiver {
	return &Receiver{ring: NewKeyRing(senderIndex, cfg)}
}

// AddKey installs a key version from a verified key message of this sender.
func (r *Receiver) AddKey(k SenderKey) error { return r.ring.Add(k) }

// Ring returns the receiver's key ring.
func (r *Receiver) Ring() *KeyRing { return r.ring }

// DecryptFrame appends the decrypted form of an encrypted frame to dst and
// returns it: clear prefix || plaintext. It fails with ErrUnknownKey when
// the KID names a key this receiver does not have (the caller may drop the
// frame and ask for a key frame later), with ErrAuth when the frame was
// altered, and when the KID belongs to another sender. dst must not overlap
// frame.
func (r *Receiver) DecryptFrame(codec Codec, frame, dst []byte) ([]byte, error) {
	n, err := codec.ClearPrefix(frame)
	if err != nil {
		return nil, err
	}
	kid, ctr, hl, err := ParseHeader(frame[n:])
	if err != nil {
		return nil, err
	}
	index, gen, step, ok := SplitKID(kid)
	if !ok || index != r.ring.index {
		return nil, fmt.Errorf("e2ee: frame KID %#x is not from sender %d", kid, r.ring.index)
	}
	r.ring.mu.Lock()
	defer r.ring.mu.Unlock()
	e, derived, err := r.ring.lookup(gen, step)
	if err != nil {
		return nil, err
	}
	dst = append(dst, frame[:n]...)
	out, err := e.sf.open(dst, frame[:n], frame[n:n+hl], frame[n+hl:], ctr)
	if err != nil {
		return nil, err
	}
	r.ring.used(e, derived)
	return out, nil
}
