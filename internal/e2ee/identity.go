package e2ee

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Sizes of the P-256 encodings.
const (
	PublicKeyLen = 65 // uncompressed point 0x04 || X || Y
	SignatureLen = 64 // IEEE P1363 r || s, as WebCrypto produces
)

// Field limits, in bytes, shared by every encoding.
const (
	maxIDLen   = 128 // org, meeting, participant ids
	maxUserLen = 256 // user id
	maxNameLen = 256 // display name
)

// ErrSignature is returned when a signature does not verify.
var ErrSignature = errors.New("e2ee: bad signature")

// ErrExpired is returned for a credential outside its validity period.
var ErrExpired = errors.New("e2ee: credential not valid at this time")

// GenerateDeviceKey makes a new long-term ECDSA P-256 device key.
func GenerateDeviceKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// MarshalPublicKey returns the 65-byte uncompressed encoding of a P-256
// public key.
func MarshalPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, errors.New("e2ee: not a P-256 public key")
	}
	return pub.Bytes()
}

// ParsePublicKey parses a 65-byte uncompressed P-256 point, refusing points
// off the curve.
func ParsePublicKey(b []byte) (*ecdsa.PublicKey, error) {
	if len(b) != PublicKeyLen {
		return nil, fmt.Errorf("%w: P-256 public key of %d bytes", ErrMalformed, len(b))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return pub, nil
}

// Sign signs msg with ECDSA P-256 / SHA-256 and returns r || s (64 bytes).
func Sign(priv *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, SignatureLen)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

// Verify checks an r || s signature of msg by pub (ECDSA P-256 / SHA-256).
func Verify(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	if pub == nil || len(sig) != SignatureLen {
		return false
	}
	h := sha256.Sum256(msg)
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// Fingerprint returns the display fingerprint of a device public key: the
// first 16 bytes of SHA-256(uncompressed point) as 8 groups of 4 upper-case
// hex digits, "1A2B 3C4D ...".
func Fingerprint(pub *ecdsa.PublicKey) (string, error) {
	b, err := MarshalPublicKey(pub)
	if err != nil {
		return "", err
	}
	return fingerprintBytes(b), nil
}

func fingerprintBytes(point []byte) string {
	h := sha256.Sum256(point)
	x := strings.ToUpper(hex.EncodeToString(h[:16]))
	var sb strings.Builder
	for i := 0; i < len(x); i += 4 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(x[i : i+4])
	}
	return sb.String()
}

const (
	credentialTag     = "CCRD"
	credentialVersion = 2
)

// CredentialFields are the statements of a credential: the organisation's
// E2EE CA says that DevicePublicKey belongs to UserID (whose login name is
// Account and display name DisplayName), between NotBefore and NotAfter
// (whole seconds).
type CredentialFields struct {
	OrgID           string
	UserID          string
	Account         string
	DisplayName     string
	DevicePublicKey *ecdsa.PublicKey
	NotBefore       time.Time
	NotAfter        time.Time
	Serial          uint64
}

// Credential is a parsed credential. Raw is its full encoding (body and
// signature), Body the signed part.
type Credential struct {
	CredentialFields
	Raw       []byte
	Body      []byte
	Signature []byte
}

// EncodeCredentialBody returns the canonical signed body of a credential:
// "CCRD" | version u8 (2) | org id str16 | user id str16 | account str16 |
// display name str16 | device public key (65) | not before i64 | not after
// i64 | serial u64. Times are Unix seconds.
func EncodeCredentialBody(f CredentialFields) ([]byte, error) {
	if err := checkCredentialFields(f); err != nil {
		return nil, err
	}
	pub, err := MarshalPublicKey(f.DevicePublicKey)
	if err != nil {
		return nil, err
	}
	w := writer{b: make([]byte, 0, 128+len(f.OrgID)+len(f.UserID)+len(f.Account)+len(f.DisplayName))}
	w.raw([]byte(credentialTag))
	w.u8(credentialVersion)
	w.str16(f.OrgID)
	w.str16(f.UserID)
	w.str16(f.Account)
	w.str16(f.DisplayName)
	w.raw(pub)
	w.i64(f.NotBefore.Unix())
	w.i64(f.NotAfter.Unix())
	w.u64(f.Serial)
	return w.b, nil
}

func checkCredentialFields(f CredentialFields) error {
	switch {
	case f.OrgID == "" || len(f.OrgID) > maxIDLen:
		return errors.New("e2ee: credential org id must be 1-128 bytes")
	case f.UserID == "" || len(f.UserID) > maxUserLen:
		return errors.New("e2ee: credential user id must be 1-256 bytes")
	case f.Account == "" || len(f.Account) > maxUserLen:
		return errors.New("e2ee: credential account must be 1-256 bytes")
	case len(f.DisplayName) > maxNameLen:
		return errors.New("e2ee: credential display name longer than 256 bytes")
	case f.NotAfter.Before(f.NotBefore):
		return errors.New("e2ee: credential ends before it starts")
	}
	return nil
}

// IssueCredential signs the fields with the organisation's E2EE CA key and
// returns the credential: body || signature (r || s).
func IssueCredential(ca *ecdsa.PrivateKey, f CredentialFields) ([]byte, error) {
	body, err := EncodeCredentialBody(f)
	if err != nil {
		return nil, err
	}
	sig, err := Sign(ca, body)
	if err != nil {
		return nil, err
	}
	return append(body, sig...), nil
}

// ParseCredential parses a credential without checking its signature or
// validity period.
func ParseCredential(b []byte) (*Credential, error) {
	r := reader{b: b}
	tag := r.take(4)
	version := r.u8()
	if r.bad || string(tag) != credentialTag {
		return nil, fmt.Errorf("%w: not a credential", ErrMalformed)
	}
	if version != credentialVersion {
		return nil, fmt.Errorf("%w: credential version %d", ErrMalformed, version)
	}
	var c Credential
	c.OrgID = r.str16(maxIDLen)
	c.UserID = r.str16(maxUserLen)
	c.Account = r.str16(maxUserLen)
	c.DisplayName = r.str16(maxNameLen)
	point := r.take(PublicKeyLen)
	nb := r.i64()
	na := r.i64()
	c.Serial = r.u64()
	bodyLen := len(b) - len(r.b)
	c.Signature = r.take(SignatureLen)
	if !r.done() || c.OrgID == "" || c.UserID == "" || c.Account == "" {
		return nil, fmt.Errorf("%w: credential", ErrMalformed)
	}
	pub, err := ParsePublicKey(point)
	if err != nil {
		return nil, err
	}
	c.DevicePublicKey = pub
	c.NotBefore, c.NotAfter = time.Unix(nb, 0), time.Unix(na, 0)
	c.Raw = b
	c.Body = b[:bodyLen]
	return &c, nil
}

// VerifyCredential parses a credential and checks its signature by the
// pinned CA key and that now lies within [NotBefore, NotAfter].
func VerifyCredential(ca *ecdsa.PublicKey, b []byte, now time.Time) (*Credential, error) {
	c, err := ParseCredential(b)
	if err != nil {
		return nil, err
	}
	if !Verify(ca, c.Body, c.Signature) {
		return nil, fmt.Errorf("credential: %w", ErrSignature)
	}
	if now.Unix() < c.NotBefore.Unix() || now.Unix() > c.NotAfter.Unix() {
		return nil, ErrExpired
	}
	return c, nil
}

// Proof of possession (docs/e2ee.md, section 7): the device key signs the
// RA's challenge before the RA certifies it.
const (
	popTag       = "CPOP"
	popVersion   = 1
	ChallengeLen = 32 // bytes of a proof-of-possession challenge
)

// PossessionMessage returns the bytes a device signs to prove it holds its
// key: "CPOP" | u8(1) | org id str16 | account str16 | device public key
// (65) | challenge (32).
func PossessionMessage(orgID, account string, devicePublicKey []byte, challenge []byte) ([]byte, error) {
	if orgID == "" || len(orgID) > maxIDLen || account == "" || len(account) > maxUserLen {
		return nil, errors.New("e2ee: proof of possession needs an org id and an account")
	}
	if len(devicePublicKey) != PublicKeyLen || len(challenge) != ChallengeLen {
		return nil, fmt.Errorf("%w: proof of possession key or challenge", ErrMalformed)
	}
	w := writer{}
	w.raw([]byte(popTag))
	w.u8(popVersion)
	w.str16(orgID)
	w.str16(account)
	w.raw(devicePublicKey)
	w.raw(challenge)
	return w.b, nil
}

// ProvePossession signs the proof-of-possession message with the device key.
func ProvePossession(device *ecdsa.PrivateKey, orgID, account string, challenge []byte) ([]byte, error) {
	pub, err := MarshalPublicKey(&device.PublicKey)
	if err != nil {
		return nil, err
	}
	msg, err := PossessionMessage(orgID, account, pub, challenge)
	if err != nil {
		return nil, err
	}
	return Sign(device, msg)
}

// VerifyPossession checks a proof of possession made by ProvePossession.
func VerifyPossession(devicePublicKey []byte, orgID, account string, challenge, sig []byte) error {
	pub, err := ParsePublicKey(devicePublicKey)
	if err != nil {
		return err
	}
	msg, err := PossessionMessage(orgID, account, devicePublicKey, challenge)
	if err != nil {
		return err
	}
	if !Verify(pub, msg, sig) {
		return fmt.Errorf("proof of possession: %w", ErrSignature)
	}
	return nil
}

const (
	revocationTag     = "CREV"
	revocationVersion = 1
)

// RevocationFields say that the organisation no longer vouches for
// DevicePublicKey as a device of UserID, from RevokedAt on.
type RevocationFields struct {
	OrgID           string
	UserID          string
	DevicePublicKey *ecdsa.PublicKey
	RevokedAt       time.Time // whole seconds
	Reason          string
}

// Revocation is a parsed revocation.
type Revocation struct {
	RevocationFields
	Raw       []byte
	Body      []byte
	Signature []byte
}

// IssueRevocation signs a revocation with the CA key: "CREV" | u8(1) | org
// id str16 | user id str16 | device public key (65) | revoked at i64 |
// reason str16, then the signature.
func IssueRevocation(ca *ecdsa.PrivateKey, f RevocationFields) ([]byte, error) {
	switch {
	case f.OrgID == "" || len(f.OrgID) > maxIDLen:
		return nil, errors.New("e2ee: revocation org id must be 1-128 bytes")
	case f.UserID == "" || len(f.UserID) > maxUserLen:
		return nil, errors.New("e2ee: revocation user id must be 1-256 bytes")
	case len(f.Reason) > maxNameLen:
		return nil, errors.New("e2ee: revocation reason longer than 256 bytes")
	}
	pub, err := MarshalPublicKey(f.DevicePublicKey)
	if err != nil {
		return nil, err
	}
	w := writer{}
	w.raw([]byte(revocationTag))
	w.u8(revocationVersion)
	w.str16(f.OrgID)
	w.str16(f.UserID)
	w.raw(pub)
	w.i64(f.RevokedAt.Unix())
	w.str16(f.Reason)
	sig, err := Sign(ca, w.b)
	if err != nil {
		return nil, err
	}
	return append(w.b, sig...), nil
}

// ParseRevocation parses a revocation without checking its signature.
func ParseRevocation(b []byte) (*Revocation, error) {
	r := reader{b: b}
	tag := r.take(4)
	version := r.u8()
	if r.bad || string(tag) != revocationTag || version != revocationVersion {
		return nil, fmt.Errorf("%w: not a revocation", ErrMalformed)
	}
	var v Revocation
	v.OrgID = r.str16(maxIDLen)
	v.UserID = r.str16(maxUserLen)
	point := r.take(PublicKeyLen)
	at := r.i64()
	v.Reason = r.str16(maxNameLen)
	bodyLen := len(b) - len(r.b)
	v.Signature = r.take(SignatureLen)
	if !r.done() || v.OrgID == "" || v.UserID == "" {
		return nil, fmt.Errorf("%w: revocation", ErrMalformed)
	}
	pub, err := ParsePublicKey(point)
	if err != nil {
		return nil, err
	}
	v.DevicePublicKey, v.RevokedAt = pub, time.Unix(at, 0)
	v.Raw, v.Body = b, b[:bodyLen]
	return &v, nil
}

// VerifyRevocation parses a revocation and checks the CA's signature.
func VerifyRevocation(ca *ecdsa.PublicKey, b []byte) (*Revocation, error) {
	v, err := ParseRevocation(b)
	if err != nil {
		return nil, err
	}
	if !Verify(ca, v.Body, v.Signature) {
		return nil, fmt.Errorf("revocation: %w", ErrSignature)
	}
	return v, nil
}
