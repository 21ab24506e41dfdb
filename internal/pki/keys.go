package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// MinRSABits is the smallest RSA modulus, in bits, accepted for a
// certificate key.
const MinRSABits = 3072

// ErrKeyPolicy is wrapped by the errors returned when a key does not meet the
// key policy (ECDSA P-256 or P-384, or RSA of at least MinRSABits bits).
var ErrKeyPolicy = errors.New("key does not meet the key policy")

// CheckKeyPolicy reports whether pub is an acceptable certificate key:
// ECDSA on P-256 or P-384, or RSA with a modulus of at least MinRSABits bits.
// The returned error wraps ErrKeyPolicy and says what to use instead.
func CheckKeyPolicy(pub crypto.PublicKey) error {
	const want = "use an ECDSA P-256 or P-384 key, or RSA of at least 3072 bits"
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s is not allowed; %s", ErrKeyPolicy, k.Curve.Params().Name, want)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits is too short; %s", ErrKeyPolicy, bits, want)
		}
		return nil
	case ed25519.PublicKey:
		return fmt.Errorf("%w: Ed25519 keys are not allowed; %s", ErrKeyPolicy, want)
	default:
		return fmt.Errorf("%w: key type %T is not allowed; %s", ErrKeyPolicy, pub, want)
	}
}

// Fingerprint returns the SHA-256 digest of the certificate's DER encoding as
// upper-case hexadecimal bytes separated by colons ("AB:CD:...").
func Fingerprint(cert *x509.Certificate) string {
	return formatFingerprint(cert.Raw)
}

func formatFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(sum)*3 - 1)
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&0x0f])
	}
	return b.String()
}

// subjectKeyID derives a key identifier with method 1 of RFC 7093, section 2:
// the leftmost 160 bits of the SHA-256 hash of the subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
