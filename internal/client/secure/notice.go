package secure

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
	ID          string
	Name        string // display name from the announcement
	UserID      string // certified user id, or "" for guests
	Fingerprint string // of the device key
	Certified   bool   // the credential verified against the pinned organisation key
	Org         string // certifying organisation's name, when Certified
	Verified    bool   // a key message from it opened (always true for Self)
	Self        bool
	SenderIndex uint16
}
