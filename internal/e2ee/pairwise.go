package e2ee

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

const (
	labelPairwise     = "Conclave E2EE v1 pairwise"
	labelKeyMessage   = "Conclave E2EE v1 key message"
	keyMessageVersion = 1
	keyPlaintextLen   = 2 + 1 + 1 + KeyLen
	// KeyMessageLen is the length of a key message payload before base64.
	KeyMessageLen = 1 + 8 + keyPlaintextLen + TagLen
)

// Direction bytes of the pairwise key derivation.
const (
	dirLowToHigh = 0x01 // sent by the party whose ECDH public key sorts first
	dirHighToLow = 0x02
)

// ErrReplay is returned for a key message whose sequence number is not
// above the last one accepted.
var ErrReplay = errors.New("e2ee: replayed or reordered key message")

// PairwiseKeys derives the two directional keys between self and peer:
// for each direction d, HKDF-SHA-256(ikm = ECDH(self, peer) x-coordinate,
// salt = meeting id, info = "Conclave E2EE v1 pairwise" || low public key
// || high public key || d, 32), where low/high sort the two 65-byte
// uncompressed points bytewise and d is 0x01 from low to high, 0x02 from
// high to low.
func PairwiseKeys(meetingID string, self *ecdh.PrivateKey, peer *ecdh.PublicKey) (send, recv [KeyLen]byte, err error) {
	secret, err := self.ECDH(peer)
	if err != nil {
		return send, recv, fmt.Errorf("pairwise ECDH: %w", err)
	}
	mine, theirs := self.PublicKey().Bytes(), peer.Bytes()
	c := bytes.Compare(mine, theirs)
	if c == 0 {
		return send, recv, errors.New("e2ee: pairwise channel with one's own key")
	}
	lo, hi := mine, theirs
	sendDir, recvDir := byte(dirLowToHigh), byte(dirHighToLow)
	if c > 0 {
		lo, hi = theirs, mine
		sendDir, recvDir = dirHighToLow, dirLowToHigh
	}
	derive := func(dir byte) ([KeyLen]byte, error) {
		info := make([]byte, 0, len(labelPairwise)+2*PublicKeyLen+1)
		info = append(append(append(append(info, labelPairwise...), lo...), hi...), dir)
		var k [KeyLen]byte
		b, err := hkdf.Key(sha256.New, secret, []byte(meetingID), string(info), KeyLen)
		copy(k[:], b)
		return k, err
	}
	if send, err = derive(sendDir); err != nil {
		return
	}
	recv, err = derive(recvDir)
	return
}

// Channel is the pairwise channel from this participant to one peer in one
// meeting; it seals and opens key messages. It is safe for concurrent use.
type Channel struct {
	meetingID, selfID, peerID string
	send, recv                cipher.AEAD
	mu                        sync.Mutex
	sendSeq, recvSeq          uint64
}

// NewChannel sets up the channel between self (this participant's
// ephemeral ECDH key) and the peer's ECDH key from its verified
// announcement.
func NewChannel(meetingID, selfID string, self *ecdh.PrivateKey, peerID string, peer *ecdh.PublicKey) (*Channel, error) {
	sk, rk, err := PairwiseKeys(meetingID, self, peer)
	if err != nil {
		return nil, err
	}
	c := &Channel{meetingID: meetingID, selfID: selfID, peerID: peerID}
	if c.send, err = newGCM(sk[:]); err != nil {
		return nil, err
	}
	if c.recv, err = newGCM(rk[:]); err != nil {
		return nil, err
	}
	return c, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seqNonce is 4 zero bytes || seq (big-endian u64).
func seqNonce(seq uint64) [12]byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

func keyMessageAAD(meetingID, from, to string, seq uint64) []byte {
	w := writer{b: make([]byte, 0, 64+len(meetingID)+len(from)+len(to))}
	w.raw([]byte(labelKeyMessage))
	w.str16(meetingID)
	w.str16(from)
	w.str16(to)
	w.u8(keyMessageVersion)
	w.u64(seq)
	return w.b
}

// Seal encrypts a sender key for the peer and returns the key message
// payload (before base64): version u8 (1) | seq u64 | AES-256-GCM(index
// u16 | generation u8 | step u8 | key 32), nonce 0^4 || seq, AAD "Conclave
// E2EE v1 key message" | meeting id str16 | from str16 | to str16 |
// version u8 | seq u64. Sequence numbers start at 1.
func (c *Channel) Seal(k SenderKey) []byte {
	c.mu.Lock()
	c.sendSeq++
	seq := c.sendSeq
	c.mu.Unlock()
	return c.sealSeq(seq, k)
}

func (c *Channel) sealSeq(seq uint64, k SenderKey) []byte {
	var pt [keyPlaintextLen]byte
	binary.BigEndian.PutUint16(pt[0:], k.Index)
	pt[2], pt[3] = k.Generation, k.Step
	copy(pt[4:], k.Key[:])
	out := make([]byte, 9, KeyMessageLen)
	out[0] = keyMessageVersion
	binary.BigEndian.PutUint64(out[1:], seq)
	nonce := seqNonce(seq)
	return c.send.Seal(out, nonce[:], pt[:], keyMessageAAD(c.meetingID, c.selfID, c.peerID, seq))
}

// Open decrypts a key message from the peer. It refuses a sequence number
// not above the last accepted one (replay), and anything altered.
func (c *Channel) Open(b []byte) (SenderKey, error) {
	if len(b) != KeyMessageLen || b[0] != keyMessageVersion {
		return SenderKey{}, fmt.Errorf("%w: key message", ErrMalformed)
	}
	seq := binary.BigEndian.Uint64(b[1:9])
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.recvSeq {
		return SenderKey{}, ErrReplay
	}
	nonce := seqNonce(seq)
	var buf [keyPlaintextLen]byte
	pt, err := c.recv.Open(buf[:0], nonce[:], b[9:], keyMessageAAD(c.meetingID, c.peerID, c.selfID, seq))
	if err != nil {
		return SenderKey{}, ErrAuth
	}
	c.recvSeq = seq
	k := SenderKey{Index: binary.BigEndian.Uint16(pt[0:]), Generation: pt[2], Step: pt[3]}
	copy(k.Key[:], pt[4:])
	return k, nil
}
