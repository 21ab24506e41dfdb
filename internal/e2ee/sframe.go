package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// SFrame constants for cipher suite AES_256_GCM_SHA512_128 (RFC 9605,
// section 4.5): Nk = 32, Nn = 12, Nt = 16, Nh = 64.
const (
	CipherSuite    = 0x0005 // AES_256_GCM_SHA512_128
	sframeKeyLen   = 32
	sframeNonceLen = 12
	TagLen         = 16 // AES-GCM tag length, the SFrame overhead after the header
	// MaxHeaderLen is the longest SFrame header: config byte, 8-byte KID,
	// 8-byte CTR.
	MaxHeaderLen = 17
)

// RFC 9605 section 4.4.2 labels; the 8-byte KID and 2-byte suite follow.
const (
	labelSFrameKey  = "SFrame 1.0 Secret key "
	labelSFrameSalt = "SFrame 1.0 Secret salt "
)

// ErrAuth is returned when a ciphertext does not authenticate: wrong key,
// altered bytes, wrong associated data.
var ErrAuth = errors.New("e2ee: message authentication failed")

// AppendHeader appends the SFrame header for kid and ctr (RFC 9605 section
// 4.3): values below 8 sit in the config byte, larger ones follow it in the
// fewest big-endian bytes.
func AppendHeader(dst []byte, kid, ctr uint64) []byte {
	var config byte
	kl, cl := 0, 0
	if kid < 8 {
		config = byte(kid) << 4
	} else {
		kl = minLen(kid)
		config = 0x80 | byte(kl-1)<<4
	}
	if ctr < 8 {
		config |= byte(ctr)
	} else {
		cl = minLen(ctr)
		config |= 0x08 | byte(cl-1)
	}
	dst = append(dst, config)
	dst = appendBE(dst, kid, kl)
	return appendBE(dst, ctr, cl)
}

func minLen(v uint64) int { return (bits.Len64(v) + 7) / 8 }

func appendBE(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// ParseHeader reads the SFrame header at the start of b and returns the KID,
// the CTR and the header length. It refuses non-minimal encodings, so that
// one (KID, CTR) has exactly one header.
func ParseHeader(b []byte) (kid, ctr uint64, n int, err error) {
	if len(b) < 1 {
		return 0, 0, 0, fmt.Errorf("%w: empty SFrame header", ErrMalformed)
	}
	c := b[0]
	n = 1
	readField := func(ext bool, v byte) (uint64, error) {
		if !ext {
			return uint64(v), nil
		}
		l := int(v) + 1
		if len(b) < n+l {
			return 0, fmt.Errorf("%w: short SFrame header", ErrMalformed)
		}
		var x uint64
		for _, d := range b[n : n+l] {
			x = x<<8 | uint64(d)
		}
		if x < 8 || minLen(x) != l {
			return 0, fmt.Errorf("%w: SFrame header value not minimally encoded", ErrMalformed)
		}
		n += l
		return x, nil
	}
	if kid, err = readField(c&0x80 != 0, (c>>4)&7); err != nil {
		return 0, 0, 0, err
	}
	if ctr, err = readField(c&0x08 != 0, c&7); err != nil {
		return 0, 0, 0, err
	}
	return kid, ctr, n, nil
}

// SFrameKey is the key and salt that RFC 9605 derives from a base key for one
// KID, ready to encrypt or decrypt.
type SFrameKey struct {
	KID  uint64
	Key  [sframeKeyLen]byte
	Salt [sframeNonceLen]byte
	aead cipher.AEAD
}

// DeriveSFrameKey runs derive_key_salt of RFC 9605 section 4.4.2 with
// HKDF-SHA-512: sframe_secret = HKDF-Extract("", base_key), then
// sframe_key = HKDF-Expand(secret, "SFrame 1.0 Secret key " || KID(8) ||
// suite(2), 32) and sframe_salt likewise with "SFrame 1.0 Secret salt ", 12.
func DeriveSFrameKey(baseKey []byte, kid uint64) (*SFrameKey, error) {
	secret, err := hkdf.Extract(sha512.New, baseKey, nil)
	if err != nil {
		return nil, err
	}
	k := &SFrameKey{KID: kid}
	key, err := hkdf.Expand(sha512.New, secret, sframeLabel(labelSFrameKey, kid), sframeKeyLen)
	if err != nil {
		return nil, err
	}
	salt, err := hkdf.Expand(sha512.New, secret, sframeLabel(labelSFrameSalt, kid), sframeNonceLen)
	if err != nil {
		return nil, err
	}
	copy(k.Key[:], key)
	copy(k.Salt[:], salt)
	block, err := aes.NewCipher(k.Key[:])
	if err != nil {
		return nil, err
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	return k, nil
}

func sframeLabel(prefix string, kid uint64) string {
	b := make([]byte, 0, len(prefix)+10)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, kid)
	b = binary.BigEndian.AppendUint16(b, CipherSuite)
	return string(b)
}

// nonce returns sframe_salt XOR CTR (CTR as a 12-byte big-endian integer).
func (k *SFrameKey) nonce(ctr uint64) [sframeNonceLen]byte {
	n := k.Salt
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], ctr)
	for i := range 8 {
		n[4+i] ^= c[i]
	}
	return n
}

// Seal appends header || AES-GCM(plaintext) to dst, with AAD = header ||
// metadata (RFC 9605 section 4.4.3).
func (k *SFrameKey) Seal(dst []byte, ctr uint64, metadata, plaintext []byte) []byte {
	var hb [MaxHeaderLen]byte
	h := AppendHeader(hb[:0], k.KID, ctr)
	var ab [MaxHeaderLen + 64]byte
	aad := append(append(ab[:0], h...), metadata...)
	nonce := k.nonce(ctr)
	dst = append(dst, h...)
	return k.aead.Seal(dst, nonce[:], plaintext, aad)
}

// Open decrypts an SFrame ciphertext (header included) with AAD = header ||
// metadata and appends the plaintext to dst. The header's KID must be k's.
func (k *SFrameKey) Open(dst, metadata, ciphertext []byte) ([]byte, error) {
	kid, ctr, n, err := ParseHeader(ciphertext)
	if err != nil {
		return nil, err
	}
	if kid != k.KID {
		return nil, fmt.Errorf("e2ee: SFrame KID %#x is not the key's %#x", kid, k.KID)
	}
	return k.open(dst, metadata, ciphertext[:n], ciphertext[n:], ctr)
}

func (k *SFrameKey) open(dst, metadata, header, body []byte, ctr uint64) ([]byte, error) {
	if len(body) < TagLen {
		return nil, fmt.Errorf("%w: SFrame ciphertext shorter than its tag", ErrMalformed)
	}
	var ab [MaxHeaderLen + 64]byte
	aad := append(append(ab[:0], header...), metadata...)
	nonce := k.nonce(ctr)
	out, err := k.aead.Open(dst, nonce[:], body, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
