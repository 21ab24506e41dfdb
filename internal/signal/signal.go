// Package signal defines Conclave's signaling protocol: the JSON messages
// exchanged over the meeting WebSocket, their validation, and the error codes
// a client can receive. docs/protocol.md describes the same protocol in prose;
// the two must agree.
package signal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Version is the protocol version spoken by this server. Every message
// carries it in its "v" field.
const Version = 1

// MaxMessageSize is the largest client message the server reads, in bytes.
// A subscriber answer for a large meeting is the biggest legitimate message.
const MaxMessageSize = 256 << 10

// Limits on individual fields.
const (
	MaxNameLen      = 64        // display name, in characters
	MaxIDLen        = 64        // request ids, participant ids, mids
	MaxSDPLen       = 200 << 10 // session descriptions, in bytes
	MaxPayloadLen   = 64 << 10  // opaque E2EE payloads (base64 text), in bytes
	MaxTracks       = 64        // entries in a publish track map
	MaxCandidateLen = 1024      // one ICE candidate line
	MaxTicketLen    = 2048      // an admission ticket (internal/ticket.MaxLen)
)

// Message types sent by clients.
const (
	TypeJoin            = "join"
	TypePublish         = "publish"
	TypeSubscribeAnswer = "subscribe-answer"
	TypeCandidate       = "candidate"
	TypeState           = "state"
	TypeRestartICE      = "restart-ice"
	TypeAnnounce        = "announce"
	TypeKey             = "key"
	TypeChat            = "chat"
	TypeVerify          = "verify"
	TypeLayout          = "layout"
	TypeLeave           = "leave"
	TypePing            = "ping"

	// Host commands (docs/protocol.md, "Host controls").
	TypeMute         = "mute"
	TypeMuteGuests   = "mute-guests"
	TypeRemove       = "remove"
	TypeSetRole      = "set-role"
	TypeLock         = "lock"
	TypeAdmit        = "admit"
	TypeDeny         = "deny"
	TypeRoomSettings = "room-settings"
	TypeEnd          = "end"
)

// Message types sent by the server (besides TypeCandidate, TypeAnnounce,
// TypeKey, TypeChat and TypeVerify, which travel both ways).
const (
	TypeWelcome            = "welcome"
	TypePublishAnswer      = "publish-answer"
	TypeSubscribeOffer     = "subscribe-offer"
	TypeParticipantJoined  = "participant-joined"
	TypeParticipantUpdated = "participant-updated"
	TypeParticipantLeft    = "participant-left"
	TypeError              = "error"
	TypePong               = "pong"
	TypeBye                = "bye"
	TypeWaiting            = "waiting"
	TypeKnock              = "knock"
	TypeKnockEnded         = "knock-ended"
	TypeRoomState          = "room-state"
	TypeMuted              = "muted"
	TypeNotice             = "notice"
	TypeLayers             = "layers"
	TypeSpeaker            = "speaker"
	TypeICEServers         = "ice-servers"
	// TypeRedirect sends the client to another node of the cluster
	// (URL; Reason "node-selection" or "draining"): it joins there, with
	// its resume token if it has one (docs/protocol.md, "Nodes").
	TypeRedirect = "redirect"
)

// Roles of participants.
const (
	RoleHost        = "host"
	RoleParticipant = "participant"
	RoleGuest       = "guest"
)

// Reasons of a waiting message.
const (
	WaitHost  = "host"  // guests wait until a host is present
	WaitLobby = "lobby" // the room is locked: a host must admit
)

// Peer connection names used in "pc" fields.
const (
	PCPublish   = "pub"
	PCSubscribe = "sub"
)

// Media sources a participant can publish.
const (
	SourceMicrophone  = "microphone"
	SourceCamera      = "camera"
	SourceScreen      = "screen"
	SourceScreenAudio = "screen-audio"
)

// Error codes. docs/protocol.md lists when each is sent.
const (
	CodeBadMessage         = "bad-message"
	CodeTooLarge           = "too-large"
	CodeUnsupportedVersion = "unsupported-version"
	CodeUnknownType        = "unknown-type"
	CodeInvalidField       = "invalid-field"
	CodeNotJoined          = "not-joined"
	CodeAlreadyJoined      = "already-joined"
	CodeRoomUnavailable    = "room-unavailable"
	CodeNotAdmitted        = "not-admitted"
	CodeForbidden          = "forbidden"
	CodeRemoved            = "removed"
	CodeRoomFull           = "room-full"
	CodeUnknownParticipant = "unknown-participant"
	CodeNegotiationFailed  = "negotiation-failed"
	CodeRateLimited        = "rate-limited"
	CodeInternal           = "internal"
	// CodeTicketRefused: a join's admission ticket is malformed, forged,
	// expired, used already, or for another room or node (fatal).
	CodeTicketRefused = "ticket-refused"
)

// Participant describes one member of a meeting as other members see it.
type Participant struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Audio   bool   `json:"audio"`             // microphone published and not muted
	Video   bool   `json:"video"`             // camera published and not turned off
	Screen  bool   `json:"screen"`            // sharing a screen
	Role    string `json:"role,omitempty"`    // host, participant or guest
	Account bool   `json:"account,omitempty"` // signed in with an account
	Muted   bool   `json:"muted,omitempty"`   // microphone muted by a host
	// Gateway is set for a participant that breaks end-to-end
	// encryption: "sip" for a telephone dialled in through the SIP
	// gateway, which holds the meeting's keys while it is present.
	Gateway string `json:"gateway,omitempty"`
}

// GatewaySIP marks a telephone that dialled in through the SIP gateway.
const GatewaySIP = "sip"

// RoomState is the room's access state as members see it.
type RoomState struct {
	Locked           bool `json:"locked"`
	GuestsMayUnmute  bool `json:"guestsMayUnmute"`
	GuestsMayPresent bool `json:"guestsMayPresent"`
	HostPresent      bool `json:"hostPresent"`
}

// TrackInfo describes one media track in a publish or subscribe-offer
// message, keyed by the transceiver's mid.
type TrackInfo struct {
	Source      string `json:"source"`
	Participant string `json:"participant,omitempty"` // subscribe-offer only
	Kind        string `json:"kind,omitempty"`        // subscribe-offer only: "audio" or "video"
	Stream      string `json:"stream,omitempty"`      // subscribe-offer only: msid stream id
}

// TrackSize is the size, in device pixels, at which a client renders a
// received track; 0x0 means hidden (the server stops forwarding it).
type TrackSize struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

// MaxTrackSize bounds the width and height of a layout entry.
const MaxTrackSize = 16384

// Candidate is an ICE candidate as produced by RTCPeerConnection's
// icecandidate event (RTCIceCandidateInit).
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// ICEServer is a STUN or TURN server the client should use.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// RoomInfo describes the room in a welcome message.
type RoomInfo struct {
	Alias string `json:"alias"`
	Name  string `json:"name"`
}

// MediaState is the client's own view of what it sends, carried by "state".
type MediaState struct {
	Audio  bool `json:"audio"`
	Video  bool `json:"video"`
	Screen bool `json:"screen"`
}

// Message is every protocol message. Fields not used by a type stay empty;
// Validate checks that a client message carries exactly what its type needs.
type Message struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	ID   string `json:"id,omitempty"` // optional request id, echoed in errors

	// join
	Room   string `json:"room,omitempty"`
	Name   string `json:"name,omitempty"`
	Resume string `json:"resume,omitempty"`
	PIN    string `json:"pin,omitempty"`

	// host commands: mute, remove, set-role, admit, deny (Target), lock
	// (Locked), set-role (Role), room-settings (Settings)
	Target   string     `json:"target,omitempty"`
	Locked   *bool      `json:"locked,omitempty"`
	Role     string     `json:"role,omitempty"`
	Settings *RoomState `json:"settings,omitempty"`

	// publish, publish-answer, subscribe-offer, subscribe-answer
	SDP    string               `json:"sdp,omitempty"`
	Tracks map[string]TrackInfo `json:"tracks,omitempty"`

	// candidate, restart-ice
	PC        string     `json:"pc,omitempty"`
	Candidate *Candidate `json:"candidate,omitempty"`

	// state
	State *MediaState `json:"state,omitempty"`

	// layout (client): rendered size of each received track, by sub mid
	Layout map[string]TrackSize `json:"layout,omitempty"`
	// layers (server): which simulcast encodings of the publisher's mid
	// someone needs
	Mid    string `json:"mid,omitempty"`
	Active []bool `json:"active,omitempty"`
	// speaker (server): the active speaker's participant id, in From

	// announce, key (opaque E2EE payloads)
	Payload string `json:"payload,omitempty"`
	To      string `json:"to,omitempty"`
	From    string `json:"from,omitempty"`

	// welcome
	Meeting      string        `json:"meeting,omitempty"`     // id of this meeting instance (E2EE context)
	UploadToken  string        `json:"uploadToken,omitempty"` // authorises file uploads and downloads
	Self         *Participant  `json:"self,omitempty"`
	Participants []Participant `json:"participants,omitempty"`
	ICEServers   []ICEServer   `json:"iceServers,omitempty"` // also ice-servers
	ICEPolicy    string        `json:"iceTransportPolicy,omitempty"`
	RoomInfo     *RoomInfo     `json:"roomInfo,omitempty"`
	Resumed      bool          `json:"resumed,omitempty"`
	// Nodes are the base URLs of the cluster's other nodes, by
	// preference, where the client reconnects if this one fails.
	Nodes []string `json:"nodes,omitempty"`

	// join: the client follows a redirect (the node does not send it on).
	Redirected bool `json:"redirected,omitempty"`
	// redirect: the base URL of the node to join.
	URL string `json:"url,omitempty"`
	// redirect, join: an admission ticket of the management node for a
	// signed-in account (internal/ticket), which the client hands to the
	// node it is sent to.
	Ticket string `json:"ticket,omitempty"`

	// participant-joined, participant-updated, participant-left, knock,
	// knock-ended, muted (By)
	Participant *Participant `json:"participant,omitempty"`
	By          string       `json:"by,omitempty"`

	// welcome, room-state
	RoomState *RoomState `json:"roomState,omitempty"`
	// waiting
	Wait string `json:"wait,omitempty"`

	// error, bye
	Code    string `json:"code,omitempty"`
	Text    string `json:"message,omitempty"`
	Fatal   bool   `json:"fatal,omitempty"`
	Reason  string `json:"reason,omitempty"`
	RefType string `json:"ref,omitempty"` // type of the message an error answers
}

// Error is a protocol error: what the server answers to a bad client
// message. Fatal errors end the connection.
type Error struct {
	Code  string
	Text  string
	Fatal bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Text }

// Errorf builds a non-fatal protocol error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...)}
}

// Fatalf builds a fatal protocol error.
func Fatalf(code, format string, args ...any) *Error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...), Fatal: true}
}

// ErrorMessage turns err into the error message sent to a client. Errors
// that are not *Error are reported as internal without their text.
func ErrorMessage(err error, ref *Message) *Message {
	var pe *Error
	if !errors.As(err, &pe) {
		pe = &Error{Code: CodeInternal, Text: "The server failed to handle this message."}
	}
	m := &Message{V: Version, Type: TypeError, Code: pe.Code, Text: pe.Text, Fatal: pe.Fatal}
	if ref != nil {
		m.ID = ref.ID
		m.RefType = ref.Type
	}
	return m
}

// Decode parses and validates one client message. The returned error is
// always a *Error suitable for sending back; the partially decoded message
// is returned with it when its id and type could be read, so the error can
// reference them.
func Decode(data []byte) (*Message, error) {
	if len(data) > MaxMessageSize {
		return nil, Fatalf(CodeTooLarge, "Message of %d bytes exceeds the limit of %d bytes.", len(data), MaxMessageSize)
	}
	if !utf8.Valid(data) {
		return nil, Errorf(CodeBadMessage, "Message is not valid UTF-8.")
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, Errorf(CodeBadMessage, "Message must be a JSON object.")
	}
	var m Message
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, Errorf(CodeBadMessage, "Message is not valid: %s.", describeJSONError(err))
	}
	if dec.More() {
		return nil, Errorf(CodeBadMessage, "Message has trailing data after the JSON object.")
	}
	if m.V != Version {
		return &m, Fatalf(CodeUnsupportedVersion, "Protocol version %d is not supported; this server speaks version %d. Reload the page.", m.V, Version)
	}
	if err := m.Validate(); err != nil {
		return &m, err
	}
	return &m, nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type (%s expected)", te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	default:
		return "malformed JSON"
	}
}

// Validate checks a client message's fields for its type.
func (m *Message) Validate() error {
	if err := checkID("id", m.ID, false); err != nil {
		return err
	}
	// Fields that only the server sends are never accepted from a client.
	if m.Self != nil || m.Participants != nil || m.ICEServers != nil || m.ICEPolicy != "" || m.RoomInfo != nil ||
		m.Resumed || m.Participant != nil || m.Code != "" || m.Text != "" || m.Fatal ||
		m.Reason != "" || m.RefType != "" || m.From != "" || m.By != "" || m.RoomState != nil || m.Wait != "" ||
		m.Meeting != "" || m.UploadToken != "" || m.Mid != "" || m.Active != nil || m.Nodes != nil || m.URL != "" {
		return Errorf(CodeInvalidField, "Message carries fields only the server may send.")
	}
	switch m.Type {
	case TypeJoin:
		if err := checkText("room", m.Room, 1, 64); err != nil {
			return err
		}
		name := strings.TrimSpace(m.Name)
		if err := checkText("name", name, 1, MaxNameLen); err != nil {
			return err
		}
		if err := checkID("resume", m.Resume, false); err != nil {
			return err
		}
		if len(m.PIN) > 32 {
			return Errorf(CodeInvalidField, "Field \"pin\" is longer than 32 characters.")
		}
		for i := 0; i < len(m.PIN); i++ {
			if m.PIN[i] < '0' || m.PIN[i] > '9' {
				return Errorf(CodeInvalidField, "A PIN is made of digits only.")
			}
		}
		if len(m.Ticket) > MaxTicketLen {
			return Errorf(CodeInvalidField, "Field \"ticket\" is longer than %d bytes.", MaxTicketLen)
		}
		return m.onlyFields("room", "name", "resume", "pin", "redirected", "ticket")
	case TypePublish:
		if err := checkSDP(m.SDP); err != nil {
			return err
		}
		if len(m.Tracks) > MaxTracks {
			return Errorf(CodeInvalidField, "Field \"tracks\" has more than %d entries.", MaxTracks)
		}
		for mid, ti := range m.Tracks {
			if err := checkID("tracks key", mid, true); err != nil {
				return err
			}
			switch ti.Source {
			case SourceMicrophone, SourceCamera, SourceScreen, SourceScreenAudio:
			default:
				return Errorf(CodeInvalidField, "Track %q has unknown source %q.", mid, ti.Source)
			}
			if ti.Participant != "" || ti.Kind != "" || ti.Stream != "" {
				return Errorf(CodeInvalidField, "Track %q may only carry a source.", mid)
			}
		}
		return m.onlyFields("sdp", "tracks")
	case TypeSubscribeAnswer:
		if err := checkSDP(m.SDP); err != nil {
			return err
		}
		return m.onlyFields("sdp")
	case TypeCandidate:
		if err := checkPC(m.PC); err != nil {
			return err
		}
		if m.Candidate == nil {
			return Errorf(CodeInvalidField, "Field \"candidate\" is required.")
		}
		c := m.Candidate
		if len(c.Candidate) > MaxCandidateLen {
			return Errorf(CodeInvalidField, "Candidate is longer than %d bytes.", MaxCandidateLen)
		}
		if c.SDPMid != nil && len(*c.SDPMid) > MaxIDLen {
			return Errorf(CodeInvalidField, "Field \"sdpMid\" is too long.")
		}
		if c.UsernameFragment != nil && len(*c.UsernameFragment) > 256 {
			return Errorf(CodeInvalidField, "Field \"usernameFragment\" is too long.")
		}
		return m.onlyFields("pc", "candidate")
	case TypeLayout:
		if m.Layout == nil {
			return Errorf(CodeInvalidField, "Field \"layout\" is required.")
		}
		if len(m.Layout) > MaxTracks {
			return Errorf(CodeInvalidField, "Field \"layout\" has more than %d entries.", MaxTracks)
		}
		for mid, sz := range m.Layout {
			if err := checkID("layout key", mid, true); err != nil {
				return err
			}
			if sz.Width < 0 || sz.Height < 0 || sz.Width > MaxTrackSize || sz.Height > MaxTrackSize {
				return Errorf(CodeInvalidField, "Track %q has a size outside 0..%d.", mid, MaxTrackSize)
			}
		}
		return m.onlyFields("layout")
	case TypeState:
		if m.State == nil {
			return Errorf(CodeInvalidField, "Field \"state\" is required.")
		}
		return m.onlyFields("state")
	case TypeRestartICE:
		if m.PC != PCSubscribe {
			return Errorf(CodeInvalidField, "Field \"pc\" must be %q; restart the publishing connection with a new publish offer.", PCSubscribe)
		}
		return m.onlyFields("pc")
	case TypeAnnounce, TypeChat, TypeVerify:
		if err := checkPayload(m.Payload); err != nil {
			return err
		}
		return m.onlyFields("payload")
	case TypeKey:
		if err := checkID("to", m.To, true); err != nil {
			return err
		}
		if err := checkPayload(m.Payload); err != nil {
			return err
		}
		return m.onlyFields("to", "payload")
	case TypeLeave, TypePing, TypeMuteGuests, TypeEnd:
		return m.onlyFields()
	case TypeMute, TypeRemove, TypeAdmit, TypeDeny:
		if err := checkID("target", m.Target, true); err != nil {
			return err
		}
		return m.onlyFields("target")
	case TypeSetRole:
		if err := checkID("target", m.Target, true); err != nil {
			return err
		}
		if m.Role != RoleHost && m.Role != RoleGuest && m.Role != RoleParticipant {
			return Errorf(CodeInvalidField, "Field \"role\" must be %q, %q or %q.", RoleHost, RoleParticipant, RoleGuest)
		}
		return m.onlyFields("target", "role")
	case TypeLock:
		if m.Locked == nil {
			return Errorf(CodeInvalidField, "Field \"locked\" is required.")
		}
		return m.onlyFields("locked")
	case TypeRoomSettings:
		if m.Settings == nil {
			return Errorf(CodeInvalidField, "Field \"settings\" is required.")
		}
		return m.onlyFields("settings")
	case "":
		return Errorf(CodeInvalidField, "Field \"type\" is required.")
	default:
		if len(m.Type) > MaxIDLen {
			m.Type = m.Type[:MaxIDLen]
		}
		return Errorf(CodeUnknownType, "Unknown message type %q.", m.Type)
	}
}

// onlyFields refuses client fields that the message's type does not use, so
// that a confused or hostile client learns about its mistake instead of
// having data silently ignored.
func (m *Message) onlyFields(allowed ...string) error {
	present := map[string]bool{
		"room":       m.Room != "",
		"name":       m.Name != "",
		"resume":     m.Resume != "",
		"sdp":        m.SDP != "",
		"tracks":     m.Tracks != nil,
		"pc":         m.PC != "",
		"candidate":  m.Candidate != nil,
		"state":      m.State != nil,
		"payload":    m.Payload != "",
		"to":         m.To != "",
		"pin":        m.PIN != "",
		"target":     m.Target != "",
		"locked":     m.Locked != nil,
		"role":       m.Role != "",
		"settings":   m.Settings != nil,
		"layout":     m.Layout != nil,
		"redirected": m.Redirected,
		"ticket":     m.Ticket != "",
	}
	for _, a := range allowed {
		delete(present, a)
	}
	for f, set := range present {
		if set {
			return Errorf(CodeInvalidField, "Field %q is not allowed in a %q message.", f, m.Type)
		}
	}
	return nil
}

func checkText(field, s string, min, max int) error {
	n := utf8.RuneCountInString(s)
	if n < min {
		return Errorf(CodeInvalidField, "Field %q is required.", field)
	}
	if n > max {
		return Errorf(CodeInvalidField, "Field %q is longer than %d characters.", field, max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return Errorf(CodeInvalidField, "Field %q contains control characters.", field)
		}
	}
	return nil
}

func checkID(field, s string, required bool) error {
	if s == "" {
		if required {
			return Errorf(CodeInvalidField, "Field %q is required.", field)
		}
		return nil
	}
	if len(s) > MaxIDLen {
		return Errorf(CodeInvalidField, "Field %q is longer than %d bytes.", field, MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return Errorf(CodeInvalidField, "Field %q may only contain letters, digits, '-', '_' and '.'.", field)
		}
	}
	return nil
}

func checkSDP(sdp string) error {
	if sdp == "" {
		return Errorf(CodeInvalidField, "Field \"sdp\" is required.")
	}
	if len(sdp) > MaxSDPLen {
		return Errorf(CodeInvalidField, "Field \"sdp\" is longer than %d bytes.", MaxSDPLen)
	}
	if !strings.HasPrefix(sdp, "v=0") {
		return Errorf(CodeInvalidField, "Field \"sdp\" is not a session description.")
	}
	return nil
}

func checkPC(pc string) error {
	if pc != PCPublish && pc != PCSubscribe {
		return Errorf(CodeInvalidField, "Field \"pc\" must be %q or %q.", PCPublish, PCSubscribe)
	}
	return nil
}

func checkPayload(p string) error {
	if p == "" {
		return Errorf(CodeInvalidField, "Field \"payload\" is required.")
	}
	if len(p) > MaxPayloadLen {
		return Errorf(CodeInvalidField, "Field \"payload\" is longer than %d bytes.", MaxPayloadLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '+' || c == '/' || c == '=') {
			return Errorf(CodeInvalidField, "Field \"payload\" must be base64 text.")
		}
	}
	return nil
}

// Encode serialises a server message, stamping the protocol version.
func Encode(m *Message) ([]byte, error) {
	m.V = Version
	return json.Marshal(m)
}
