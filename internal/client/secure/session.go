package secure

import (
	"crypto/ecdh"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/client"
	"conclave/internal/e2ee"
	"conclave/internal/signal"
)

// Transport carries this session's opaque E2EE messages; *client.Session
// is one.
type Transport interface {
	SendAnnounce(payload []byte) error
	SendKey(to string, payload []byte) error
	SendVerify(payload []byte) error
}

// Session is the end-to-end encryption of one participant: its keys, the
// participants it verified, and the transforms of its frames. It is safe
// for concurrent use.
type Session struct {
	cfg Config
	log *slog.Logger

	// mu serialises everything but the frame path: event handling,
	// timers and the sends they make, so that key messages leave in the
	// order of their sequence numbers.
	mu          sync.Mutex
	tr          Transport        // written with mu and st held
	epoch       int              // bumped at each fresh welcome; stale timers check it
	eph         *ecdh.PrivateKey // this meeting's ECDH key
	pending     *e2ee.Sender     // a rotated key not used yet
	rotateStop  func() bool
	roundStop   func() bool // the timer of the commit the round owes
	switchStop  func() bool
	preexisting map[string]bool        // the others at our welcome: not newcomers
	buffered    map[string][][]byte    // key messages that came before their sender's announcement
	ownPayload  []byte                 // our signed announcement
	listed      map[string]string      // the server's participants (others), id -> name
	graceStops  map[string]func() bool // AnnounceGrace checks, by participant
	verifyQueue map[string][][]byte    // verify messages kept until they can be used, by sender
	departed    map[string]*peer       // who left this meeting, to report a revocation that comes after (at most maxDeparted)
	closed      bool

	// st guards the state read by the frame path and the accessors. It is
	// held briefly and never while sending.
	st      sync.RWMutex
	meeting string
	self    string
	own     *e2ee.VerifiedAnnouncement
	peers   map[string]*peer // verified announcements, by participant id
	code    string
	counts  map[string]*counters // by participant id, kept after a leave
	rounds  *e2ee.RoundState     // the meeting code's verification rounds
	// revokedPeers are participants whose device the log revoked during
	// this meeting: shown as revoked, never keyed again.
	revokedPeers map[string]Participant

	active             atomic.Pointer[e2ee.Sender]
	encrypted, dropped atomic.Uint64 // own frames
}

// peer is a participant whose announcement this session verified.
type peer struct {
	id   string
	ann  *e2ee.VerifiedAnnouncement
	ch   *e2ee.Channel
	recv *e2ee.Receiver
	cnt  *counters

	verified   atomic.Bool // a key message from it opened
	certified  bool        // shown as certified (guarded by Session.mu)
	warnedView uint32      // the commit round whose other view was warned about (Session.mu)
	warnedLike string      // whose name this participant's was last said to look like (Session.mu)

	// Guarded by Session.mu.
	keysSent   bool // it got a key from us: its leave needs a rotation
	lastResend time.Time

	// Frame path: key requests and the observer.
	failingSince atomic.Int64  // Unix ns of the first "unknown key" since the last success; 0 if none
	lastRequest  atomic.Int64  // Unix ns of the last key request sent
	lastKID      atomic.Uint64 // KID+1 of the last frame decrypted, for FirstDecrypt

	// Frames of a key generation not held yet wait for it (awaitKey).
	keyMu     sync.Mutex
	keyAdded  chan struct{} // closed, and replaced, when a key of this peer is added
	waitUntil time.Time     // when the wait ends; zero: none began since the last key
}

// keyArrived wakes the frames waiting for a key of p.
func (p *peer) keyArrived() {
	p.keyMu.Lock()
	close(p.keyAdded)
	p.keyAdded = make(chan struct{})
	p.waitUntil = time.Time{}
	p.keyMu.Unlock()
}

// New makes a Session. Wire plugs it into client options; Dial then
// starts it.
func New(cfg Config) (*Session, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Session{
		cfg:          cfg,
		log:          cfg.Logger,
		peers:        map[string]*peer{},
		graceStops:   map[string]func() bool{},
		counts:       map[string]*counters{},
		verifyQueue:  map[string][][]byte{},
		departed:     map[string]*peer{},
		revokedPeers: map[string]Participant{},
	}
	if cfg.Log != nil {
		cfg.Log.Listen(s.onLogEvent)
	}
	return s, nil
}

// Wire makes opts use this session: its frame transforms and its hooks.
// Hooks already in opts still run: OnEvent before this session's (so that
// "joined" is reported before the first meeting code), the others after.
func (s *Session) Wire(opts *client.Options) {
	prev := opts.Hooks
	opts.SendTransform = sendTransform{s}
	opts.ReceiveTransform = receiveTransform{s}
	opts.Hooks.OnStart = func(cs *client.Session) {
		s.Attach(cs)
		if prev.OnStart != nil {
			prev.OnStart(cs)
		}
	}
	opts.Hooks.OnEvent = func(e client.Event) {
		if prev.OnEvent != nil {
			prev.OnEvent(e)
		}
		s.onEvent(e)
	}
	opts.Hooks.OnAnnounce = func(from string, payload []byte) {
		s.onAnnounce(from, payload)
		if prev.OnAnnounce != nil {
			prev.OnAnnounce(from, payload)
		}
	}
	opts.Hooks.OnKey = func(from string, payload []byte) {
		s.onKey(from, payload)
		if prev.OnKey != nil {
			prev.OnKey(from, payload)
		}
	}
	opts.Hooks.OnVerify = func(from string, payload []byte) {
		s.onVerify(from, payload)
		if prev.OnVerify != nil {
			prev.OnVerify(from, payload)
		}
	}
}

// Attach sets the transport of the session's messages (Wire does it).
func (s *Session) Attach(tr Transport) {
	s.mu.Lock()
	s.st.Lock()
	s.tr = tr
	s.st.Unlock()
	s.mu.Unlock()
}

// onEvent follows the client session: welcomes, leaves, the end.
func (s *Session) onEvent(e client.Event) {
	switch e.Kind {
	case client.Joined:
		s.onWelcome(e.Participant.ID, e.Meeting, ids(e.Others))
	case client.Rejoined:
		if e.Resumed {
			s.reannounce()
		} else {
			s.onWelcome(e.Participant.ID, e.Meeting, ids(e.Others))
		}
	case client.ParticipantJoined:
		s.onListed(e.Participant.ID, e.Participant.Name)
	case client.ParticipantLeft:
		s.onLeft(e.Participant.ID)
	case client.Closed:
		s.close()
	}
}

func ids(ps []signal.Participant) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// close stops the timers; the keys stay readable for the summary (and
// for tests) until the Session is dropped.
func (s *Session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.epoch++
	s.stopTimers()
}

func (s *Session) stopTimers() {
	if s.rotateStop != nil {
		s.rotateStop()
		s.rotateStop = nil
	}
	if s.switchStop != nil {
		s.switchStop()
		s.switchStop = nil
	}
	if s.roundStop != nil {
		s.roundStop()
		s.roundStop = nil
	}
	for _, stop := range s.graceStops {
		stop()
	}
	clear(s.graceStops)
}

// notify hands a notice to OnNotice. Called with mu held, st not held.
func (s *Session) notify(n Notice) {
	if s.cfg.OnNotice != nil {
		s.cfg.OnNotice(n)
	}
}

// warn logs and shows a warning. text must hold no key material.
func (s *Session) warn(text string) {
	s.log.Warn("end-to-end encryption: " + text)
	s.notify(Notice{Kind: Warning, Text: text})
}

func (s *Session) observe(e KeyEvent) {
	if s.cfg.Observer != nil {
		e.At = s.cfg.Clock.Now()
		s.cfg.Observer(e)
	}
}

// MeetingCode returns the current meeting code ("" before the welcome).
func (s *Session) MeetingCode() string {
	s.st.RLock()
	defer s.st.RUnlock()
	return s.code
}

// MeetingID returns the meeting instance id the keys are bound to.
func (s *Session) MeetingID() string {
	s.st.RLock()
	defer s.st.RUnlock()
	return s.meeting
}

// Participants returns this participant and every participant whose
// announcement it verified, sorted by name: the only list to show.
func (s *Session) Participants() []Participant {
	s.st.RLock()
	var out []Participant
	if s.own != nil {
		out = append(out, s.describe(s.own, true, true))
	}
	for _, p := range s.peers {
		out = append(out, s.describe(p.ann, false, p.verified.Load()))
	}
	s.st.RUnlock()
	slices.SortFunc(out, func(a, b Participant) int {
		return strings.Compare(a.Name+"\x00"+a.ID, b.Name+"\x00"+b.ID)
	})
	return out
}

// Participant returns what this session knows of one participant.
func (s *Session) Participant(id string) (Participant, bool) {
	s.st.RLock()
	defer s.st.RUnlock()
	if s.own != nil && id == s.self {
		return s.describe(s.own, true, true), true
	}
	if p := s.peers[id]; p != nil {
		return s.describe(p.ann, false, p.verified.Load()), true
	}
	return Participant{}, false
}

func (s *Session) describe(a *e2ee.VerifiedAnnouncement, self, verified bool) Participant {
	p := Participant{ID: a.ParticipantID, Name: e2ee.CleanName(a.DisplayName), Fingerprint: a.Fingerprint,
		Verified: verified, Self: self, SenderIndex: a.SenderIndex}
	if a.Certified && s.cfg.Log != nil {
		st := s.cfg.Log.Status(a.Credential)
		p.Revoked = st.Revoked
		p.Certified = st.Logged && !st.Revoked
		p.Pending = !st.Logged && !st.Revoked
		if p.Certified && !self && !st.FirstCertified.IsZero() && s.cfg.Clock.Now().Sub(st.FirstCertified) < NewDeviceAge {
			p.NewDevice, p.FirstCertified = true, st.FirstCertified
		}
	}
	if p.Revoked || p.Pending {
		// Who the credential names, to say whose device it is.
		p.Account, p.CertifiedName = a.Cred.Account, e2ee.CleanName(a.Cred.DisplayName)
	}
	if p.Certified {
		p.UserID, p.Account, p.CertifiedName, p.Org = a.UserID, a.Cred.Account, e2ee.CleanName(a.Cred.DisplayName), s.cfg.OrgName
		if p.Org == "" {
			p.Org = a.Cred.OrgID
		}
	}
	return p
}

// certified reports whether a participant is certified: a credential of
// the pinned organisation, logged in the trusted tree, not revoked.
func (s *Session) certified(a *e2ee.VerifiedAnnouncement) bool {
	if !a.Certified || s.cfg.Log == nil {
		return false
	}
	st := s.cfg.Log.Status(a.Credential)
	return st.Logged && !st.Revoked
}

// KeyRing returns the keys this session holds for a participant's frames,
// or nil. It is for tests and tools.
func (s *Session) KeyRing(participant string) *e2ee.KeyRing {
	s.st.RLock()
	defer s.st.RUnlock()
	if p := s.peers[participant]; p != nil {
		return p.recv.Ring()
	}
	return nil
}
