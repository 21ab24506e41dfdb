package e2ee

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"time"
)

const (
	announcementTag     = "CANN"
	announcementVersion = 1
	maxCredentialLen    = 1024
)

// Announcement is what a participant states about itself in one meeting.
// It is signed by its device key and relayed by the server as the payload
// of `announce`.
type Announcement struct {
	MeetingID       string
	ParticipantID   string
	UserID          string // empty for guests (and then Credential is empty)
	DisplayName     string
	ECDHPublicKey   *ecdh.PublicKey  // ephemeral, this meeting only
	DevicePublicKey *ecdsa.PublicKey // long-term, signs the announcement
	Credential      []byte           // optional, as IssueCredential returns it
	SenderIndex     uint16
	Timestamp       time.Time // milliseconds
}

// EncodeAnnouncementBody returns the canonical signed body: "CANN" |
// version u8 (1) | meeting id str16 | participant id str16 | user id str16
// | display name str16 | ECDH public key (65) | device public key (65) |
// credential bytes16 (empty if none) | sender index u16 | timestamp i64
// (Unix milliseconds).
func EncodeAnnouncementBody(a Announcement) ([]byte, error) {
	switch {
	case a.MeetingID == "" || len(a.MeetingID) > maxIDLen:
		return nil, errors.New("e2ee: meeting id must be 1-128 bytes")
	case a.ParticipantID == "" || len(a.ParticipantID) > maxIDLen:
		return nil, errors.New("e2ee: participant id must be 1-128 bytes")
	case len(a.UserID) > maxUserLen || len(a.DisplayName) > maxNameLen:
		return nil, errors.New("e2ee: user id or display name longer than 256 bytes")
	case len(a.Credential) > maxCredentialLen:
		return nil, errors.New("e2ee: credential longer than 1024 bytes")
	case a.ECDHPublicKey == nil || a.ECDHPublicKey.Curve() != ecdh.P256():
		return nil, errors.New("e2ee: announcement needs a P-256 ECDH public key")
	}
	dev, err := MarshalPublicKey(a.DevicePublicKey)
	if err != nil {
		return nil, err
	}
	w := writer{b: make([]byte, 0, 256+len(a.Credential))}
	w.raw([]byte(announcementTag))
	w.u8(announcementVersion)
	w.str16(a.MeetingID)
	w.str16(a.ParticipantID)
	w.str16(a.UserID)
	w.str16(a.DisplayName)
	w.raw(a.ECDHPublicKey.Bytes())
	w.raw(dev)
	w.bytes16(a.Credential)
	w.u16(a.SenderIndex)
	w.i64(a.Timestamp.UnixMilli())
	return w.b, nil
}

// SignAnnouncement encodes a and signs it with the device key, whose
// public half it sets as a.DevicePublicKey. The result (body || r || s) is
// the announce payload, before base64.
func SignAnnouncement(device *ecdsa.PrivateKey, a Announcement) ([]byte, error) {
	a.DevicePublicKey = &device.PublicKey
	body, err := EncodeAnnouncementBody(a)
	if err != nil {
		return nil, err
	}
	sig, err := Sign(device, body)
	if err != nil {
		return nil, err
	}
	return append(body, sig...), nil
}

// SignedAnnouncement is a parsed announcement with its encodings.
type SignedAnnouncement struct {
	Announcement
	Raw       []byte // body || signature
	Body      []byte // the signed part, hashed into the meeting code
	Signature []byte
}

// ParseAnnouncement parses an announcement without verifying anything.
func ParseAnnouncement(b []byte) (*SignedAnnouncement, error) {
	r := reader{b: b}
	tag := r.take(4)
	version := r.u8()
	if r.bad || string(tag) != announcementTag {
		return nil, fmt.Errorf("%w: not an announcement", ErrMalformed)
	}
	if version != announcementVersion {
		return nil, fmt.Errorf("%w: announcement version %d", ErrMalformed, version)
	}
	var s SignedAnnouncement
	s.MeetingID = r.str16(maxIDLen)
	s.ParticipantID = r.str16(maxIDLen)
	s.UserID = r.str16(maxUserLen)
	s.DisplayName = r.str16(maxNameLen)
	ecdhPoint := r.take(PublicKeyLen)
	devPoint := r.take(PublicKeyLen)
	cred := r.bytes16(maxCredentialLen)
	s.SenderIndex = r.u16()
	ts := r.i64()
	bodyLen := len(b) - len(r.b)
	s.Signature = r.take(SignatureLen)
	if !r.done() || s.MeetingID == "" || s.ParticipantID == "" {
		return nil, fmt.Errorf("%w: announcement", ErrMalformed)
	}
	var err error
	if s.ECDHPublicKey, err = ecdh.P256().NewPublicKey(ecdhPoint); err != nil {
		return nil, fmt.Errorf("%w: announcement ECDH key: %v", ErrMalformed, err)
	}
	if s.DevicePublicKey, err = ParsePublicKey(devPoint); err != nil {
		return nil, err
	}
	if len(cred) > 0 {
		s.Credential = cred
	}
	s.Timestamp = time.UnixMilli(ts)
	s.Raw, s.Body = b, b[:bodyLen]
	return &s, nil
}

// VerifyOptions are what a client checks announcements against.
type VerifyOptions struct {
	MeetingID string           // the meeting this client is in
	OrgKey    *ecdsa.PublicKey // the pinned organisation E2EE CA key; nil if none
	Now       time.Time        // for the credential's validity period
}

// VerifiedAnnouncement is an announcement whose signature and bindings were
// checked. Only these enter the participant list and the meeting code.
type VerifiedAnnouncement struct {
	SignedAnnouncement
	// Certified is true when a credential verified against the pinned
	// organisation key and binds this device key and user id.
	Certified bool
	// Cred is the parsed credential when Certified.
	Cred *Credential
	// Fingerprint of the device key, for display.
	Fingerprint string
}

// VerifyAnnouncement parses b and checks: the signature by the device key
// inside; the meeting id; a guest (no credential) claims no user id; a
// credential, when present and an org key is pinned, verifies and binds
// the same device key and user id (else the announcement is refused). With
// no org key pinned a credential is ignored and the participant is not
// certified. The caller still checks that ParticipantID is the `from` the
// server gave.
func VerifyAnnouncement(b []byte, opts VerifyOptions) (*VerifiedAnnouncement, error) {
	s, err := ParseAnnouncement(b)
	if err != nil {
		return nil, err
	}
	if !Verify(s.DevicePublicKey, s.Body, s.Signature) {
		return nil, fmt.Errorf("announcement: %w", ErrSignature)
	}
	if s.MeetingID != opts.MeetingID {
		return nil, fmt.Errorf("e2ee: announcement for meeting %q, not this one", s.MeetingID)
	}
	v := &VerifiedAnnouncement{SignedAnnouncement: *s}
	v.Fingerprint, _ = Fingerprint(s.DevicePublicKey)
	if s.Credential == nil {
		if s.UserID != "" {
			return nil, errors.New("e2ee: announcement claims a user id without a credential")
		}
		return v, nil
	}
	if opts.OrgKey == nil {
		return v, nil
	}
	c, err := VerifyCredential(opts.OrgKey, s.Credential, opts.Now)
	if err != nil {
		return nil, fmt.Errorf("announcement credential: %w", err)
	}
	if !c.DevicePublicKey.Equal(s.DevicePublicKey) {
		return nil, errors.New("e2ee: credential certifies another device key")
	}
	if c.UserID != s.UserID {
		return nil, errors.New("e2ee: credential certifies another user id")
	}
	v.Certified, v.Cred = true, c
	return v, nil
}
