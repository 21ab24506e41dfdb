package secure

import "time"

// NoticeKind says what a Notice reports.
type NoticeKind int

// Kinds of notices.
const (
	// CodeChanged: the meeting code is now Code.
	CodeChanged NoticeKind = iota + 1
	// Announced: Participant's announcement verified; it is listed, with
	// its fingerprint and certification, and gets keys.
	Announced
	// Verified: a key message from Participant opened: it holds the
	// private key of its announcement ("end-to-end verified").
	Verified
	// Gone: Participant left; it is no longer listed.
	Gone
	// Warning: something a person must know (Text): a refused
	// announcement, a key message that does not open, a replay, a changed
	// organisation key.
	Warning
	// Revoked: the log revoked Participant's device; it is no longer
	// listed as a member and gets no more keys.
	Revoked
	// NewDevice: a device was certified for this user's own account
	// (Text names it).
	NewDevice
)

// Notice is something to show to the person in the meeting.
type Notice struct {
	Kind        NoticeKind
	Code        string
	Participant Participant
	Text        string
}

// Participant is a participant as this session knows it from its verified
// announcement (or itself).
type Participant struct {
	ID            string
	Name          string // display name from the announcement (free text), cleaned of invisible characters
	UserID        string // certified user id, or "" for guests
	Account       string // certified account (login name), when Certified, Pending or Revoked
	CertifiedName string // the display name the credential gives, likewise
	Fingerprint   string // of the device key
	// Certified: the credential verified against the pinned organisation
	// key, is in the transparency log, and its device is not revoked.
	Certified bool
	// Pending: a credential that verified but is not (yet) in the log the
	// client trusts; not certified until it is.
	Pending bool
	// Revoked: the log holds a revocation of this device.
	Revoked bool
	// NewDevice: the device was first certified less than NewDeviceAge
	// ago (FirstCertified).
	NewDevice      bool
	FirstCertified time.Time
	Org            string // certifying organisation's name, when Certified
	Verified       bool   // a key message from it opened (always true for Self)
	Self           bool
	SenderIndex    uint16
}
