package e2ee

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The E2EE transparency log (docs/e2ee.md, section 13): records are
// credentials and revocations, the tree is tlog's (RFC 6962 hashing), and
// checkpoints are C2SP tlog-checkpoints in signed notes with signature type
// 0x02 (ECDSA P-256 over SHA-256, ASN.1 DER; key ID = SHA-256(SPKI)[:4]).

// algECDSA is signed-note signature type 0x02.
const algECDSA = 0x02

// logOriginPrefix starts the origin (and key name) of every Conclave log.
const logOriginPrefix = "e2ee-log.conclave/"

// MaxCheckpointLen bounds a signed checkpoint note, in bytes.
const MaxCheckpointLen = 1024

// ErrSplitView reports two checkpoints of one log that cannot both be
// true: the same size with different roots, or a consistency proof that
// fails. It is the server showing different clients different logs.
var ErrSplitView = errors.New("e2ee: split view of the log")

// LogKeyID returns the signed-note key ID of a P-256 log key: the first 4
// bytes of SHA-256 of its DER SubjectPublicKeyInfo, and that SPKI.
func LogKeyID(pub *ecdsa.PublicKey) (uint32, []byte, error) {
	if _, err := MarshalPublicKey(pub); err != nil {
		return 0, nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return 0, nil, err
	}
	h := sha256.Sum256(spki)
	return binary.BigEndian.Uint32(h[:4]), spki, nil
}

// LogOrigin returns the origin line (and key name) of the log signed by
// pub: "e2ee-log.conclave/" and the first 8 bytes of SHA-256(SPKI) in hex.
func LogOrigin(pub *ecdsa.PublicKey) (string, error) {
	_, spki, err := LogKeyID(pub)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(spki)
	return logOriginPrefix + hex.EncodeToString(h[:8]), nil
}

// LogVerifierKey returns the verifier key clients pin:
// <origin>+<key ID hex>+base64(0x02 || SPKI DER).
func LogVerifierKey(pub *ecdsa.PublicKey) (string, error) {
	id, spki, err := LogKeyID(pub)
	if err != nil {
		return "", err
	}
	origin, _ := LogOrigin(pub)
	return fmt.Sprintf("%s+%08x+%s", origin, id, base64.StdEncoding.EncodeToString(append([]byte{algECDSA}, spki...))), nil
}

// logSigner is a note.Signer for type 0x02.
type logSigner struct {
	name string
	id   uint32
	key  *ecdsa.PrivateKey
}

func (s logSigner) Name() string    { return s.name }
func (s logSigner) KeyHash() uint32 { return s.id }
func (s logSigner) Sign(msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.key, h[:])
}

// NewLogSigner returns a note signer for the log key.
func NewLogSigner(key *ecdsa.PrivateKey) (note.Signer, error) {
	id, _, err := LogKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	origin, _ := LogOrigin(&key.PublicKey)
	return logSigner{name: origin, id: id, key: key}, nil
}

// logVerifier is a note.Verifier for type 0x02.
type logVerifier struct {
	name string
	id   uint32
	pub  *ecdsa.PublicKey
}

func (v logVerifier) Name() string    { return v.name }
func (v logVerifier) KeyHash() uint32 { return v.id }
func (v logVerifier) Verify(msg, sig []byte) bool {
	h := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.pub, h[:], sig)
}

// LogVerifier parses a pinned verifier key (LogVerifierKey). It accepts
// only type 0x02 with a P-256 key whose origin and key ID match.
func LogVerifier(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: log verifier key", ErrMalformed)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < 2 || raw[0] != algECDSA {
		return nil, fmt.Errorf("%w: log verifier key is not ECDSA (signed-note type 0x02)", ErrMalformed)
	}
	k, err := x509.ParsePKIXPublicKey(raw[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: log verifier key: %v", ErrMalformed, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: log verifier key is not ECDSA", ErrMalformed)
	}
	want, err := LogVerifierKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: log verifier key: %v", ErrMalformed, err)
	}
	if want != vkey {
		return nil, fmt.Errorf("%w: log verifier key name or ID does not match its key", ErrMalformed)
	}
	id, _, _ := LogKeyID(pub)
	return logVerifier{name: parts[0], id: id, pub: pub}, nil
}

// Checkpoint is a verified log head.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
	Note   []byte // the signed note it came in
}

// Equal reports whether two checkpoints name the same tree.
func (c Checkpoint) Equal(o Checkpoint) bool {
	return c.Origin == o.Origin && c.Size == o.Size && c.Hash == o.Hash
}

// SignCheckpoint returns the signed note of the tree (size, hash).
func SignCheckpoint(s note.Signer, size int64, hash tlog.Hash) ([]byte, error) {
	text := fmt.Sprintf("%s\n%d\n%s\n", s.Name(), size, base64.StdEncoding.EncodeToString(hash[:]))
	return note.Sign(&note.Note{Text: text}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the pinned log verifier
// and parses it. Extension lines after the root hash are allowed and
// ignored, as C2SP tlog-checkpoint says.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	if len(signed) > MaxCheckpointLen {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint longer than %d bytes", ErrMalformed, MaxCheckpointLen)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" || lines[0] != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint of another log or not one", ErrMalformed)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint size", ErrMalformed)
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint root hash", ErrMalformed)
	}
	c := Checkpoint{Origin: lines[0], Size: size, Note: bytes.Clone(signed)}
	copy(c.Hash[:], h)
	return c, nil
}

// RecordHash is the leaf hash of a log record.
func RecordHash(record []byte) tlog.Hash { return tlog.RecordHash(record) }

// VerifyInclusion checks that record is record index of the tree of c.
func VerifyInclusion(c Checkpoint, index int64, record []byte, proof tlog.RecordProof) error {
	if index < 0 || index >= c.Size {
		return fmt.Errorf("%w: record %d outside a tree of %d", ErrMalformed, index, c.Size)
	}
	if err := tlog.CheckRecord(proof, c.Size, c.Hash, index, tlog.RecordHash(record)); err != nil {
		return fmt.Errorf("inclusion proof: %w", err)
	}
	return nil
}

// VerifyConsistency checks that the tree of newer extends the tree of
// older; it returns ErrSplitView when it does not.
func VerifyConsistency(older, newer Checkpoint, proof tlog.TreeProof) error {
	switch {
	case older.Origin != newer.Origin:
		return fmt.Errorf("%w: checkpoints of two logs", ErrMalformed)
	case older.Size > newer.Size:
		return VerifyConsistency(newer, older, proof)
	case older.Size == newer.Size:
		if older.Hash != newer.Hash {
			return fmt.Errorf("%w: two trees of %d records", ErrSplitView, older.Size)
		}
		return nil
	case older.Size == 0:
		return nil
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Hash, older.Size, older.Hash); err != nil {
		return fmt.Errorf("%w: the tree of %d records does not extend the tree of %d (%v)", ErrSplitView, newer.Size, older.Size, err)
	}
	return nil
}

// LogRecordKind says what a log record is.
type LogRecordKind int

// Kinds of log records.
const (
	RecordCredential LogRecordKind = iota + 1
	RecordRevocation
)

// KindOf tells a record's kind from its tag, 0 if unknown.
func KindOf(record []byte) LogRecordKind {
	switch {
	case bytes.HasPrefix(record, []byte(credentialTag)):
		return RecordCredential
	case bytes.HasPrefix(record, []byte(revocationTag)):
		return RecordRevocation
	}
	return 0
}
