package store

import (
	"context"
	"time"
)

// DeviceToken is a one-time token with which a device of a user enrols at
// the registration authority (docs/sip.md). Only the SHA-256 hash of the
// token is stored.
type DeviceToken struct {
	TokenHash []byte
	UserID    int64
	// CreatedBy is the username of whoever made the token: an
	// administrator, or the user for their own device.
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero if unused
}

// DeviceCert is a device certificate issued by the registration
// authority, with its revocation state.
type DeviceCert struct {
	// Serial is the certificate's serial number in lower-case hexadecimal.
	Serial string
	// UserID is the account it was issued to; 0 once that account is
	// deleted (the certificate stays, revoked, for the CRL and OCSP).
	UserID int64
	// AOR is the SIP address of record the certificate is bound to.
	AOR string
	// Fingerprint is the SHA-256 fingerprint of the certificate.
	Fingerprint string
	// KeyType describes the device key ("ECDSA P-256", "RSA 3072").
	KeyType  string
	IssuedAt time.Time
	NotAfter time.Time
	// RevokedAt is when it was revoked; zero if it is not.
	RevokedAt time.Time
	// Reason is the CRL reason code (RFC 5280, 5.3.1) of a revocation.
	Reason int
	// DER is the certificate.
	DER []byte
	// DigestHA1 holds the HA1 values of the device's SIP digest secret
	// ("MD5:<hex> SHA-256:<hex>"), never the secret.
	DigestHA1 string
}

// CDR is a sealed call detail record: the store keeps the ciphertext and
// the start time it is listed by, and never sees the content.
type CDR struct {
	ID        string
	StartedAt time.Time
	Sealed    []byte
}

// DeviceStore keeps the registration authority's tokens and certificates
// and the telephony's call detail records. *SQLite implements it.
type DeviceStore interface {
	// CreateDeviceToken stores a new, unused token.
	CreateDeviceToken(ctx context.Context, t DeviceToken) error
	// ConsumeDeviceToken atomically marks the token with tokenHash as used
	// at now and returns it, provided it is unused and not expired at now.
	// Unknown, used and expired tokens all yield ErrNotFound.
	ConsumeDeviceToken(ctx context.Context, tokenHash []byte, now time.Time) (DeviceToken, error)
	// CreateDeviceCert records an issued certificate.
	CreateDeviceCert(ctx context.Context, c DeviceCert) error
	// DeviceCertBySerial returns the certificate with the given serial.
	DeviceCertBySerial(ctx context.Context, serial string) (DeviceCert, error)
	// ListDeviceCerts returns the certificates of one user (every user when
	// userID is 0), newest first.
	ListDeviceCerts(ctx context.Context, userID int64) ([]DeviceCert, error)
	// RevokeDeviceCert marks a certificate revoked at t for reason, unless
	// it already is; it returns the certificate as stored afterwards.
	RevokeDeviceCert(ctx context.Context, serial string, t time.Time, reason int) (DeviceCert, error)
	// SetDeviceDigest replaces the stored digest secret of a certificate
	// (to seal one written in the clear).
	SetDeviceDigest(ctx context.Context, serial, digest string) error
	// RevokedDeviceCerts returns every revoked certificate that has not
	// expired at now, for the revocation list.
	RevokedDeviceCerts(ctx context.Context, now time.Time) ([]DeviceCert, error)
	// AddCDR stores a sealed call detail record, replacing one with the
	// same ID (a record is written when a call starts and again when it
	// ends).
	AddCDR(ctx context.Context, c CDR) error
	// ListCDRs returns the records started in [from, to), newest first, at
	// most limit of them.
	ListCDRs(ctx context.Context, from, to time.Time, limit int) ([]CDR, error)
}
