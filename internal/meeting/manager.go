// Package meeting runs meetings on a conference node: it admits participants
// into rooms over a signaling connection, decides which tracks each member
// receives and how (through the media core's vocabulary, internal/conn:
// it never sees WebRTC), finds the active speaker, and relays signaling
// and opaque E2EE messages between members of the same room only.
package meeting

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/clock"
	"conclave/internal/conn"
	"conclave/internal/signal"
)

// Config holds the meeting settings of a node.
type Config struct {
	// ResumeWindow is how long a participant whose connection dropped is
	// kept, waiting for it to come back with its resume token.
	ResumeWindow time.Duration
	// MaxParticipants per room.
	MaxParticipants int
	// ICEServers are sent to clients in welcome.
	ICEServers []signal.ICEServer
	// Relay, when set, adds a TURN server with credentials for each
	// participant to the welcome, pushes fresh credentials (ice-servers)
	// every half of their lifetime, and revokes them when the
	// participant leaves.
	Relay Relay
	// AlwaysRelay tells clients to send all media through the relay
	// (iceTransportPolicy "relay" in welcome).
	AlwaysRelay bool
	// WaitForHost is how long a guest waits for a host before being sent
	// away; HostGrace is how long a meeting goes on after its last host
	// left.
	WaitForHost, HostGrace time.Duration
	// Logger receives the meeting logs; nil means slog.Default().
	Logger *slog.Logger
	// Clock runs the meeting's timers (resume window, waiting for a host,
	// grace after the last host left, the active speaker's sampling,
	// TURN credential refreshes) and its rate limits; nil means
	// clock.System.
	Clock clock.Clock
	// Audit records host actions (mute, remove, lock, admit, deny, role
	// changes, settings, end); nil records nothing.
	Audit Auditor
	// Speaker tunes the detection of the active speaker.
	Speaker SpeakerConfig
	// Director sends joining participants to another node of the
	// cluster by policy, and names the nodes a client falls back to; nil
	// for a node alone (nodes.go).
	Director Director
}

// Relay issues participants' TURN credentials (internal/turn).
type Relay interface {
	// ICEServers returns the TURN servers with fresh credentials for
	// participant.
	ICEServers(participant string) []signal.ICEServer
	// TTL is how long those credentials can open allocations.
	TTL() time.Duration
	// Release revokes participant's credentials and ends its relays.
	Release(participant string)
}

// Manager holds the active meetings of a node.
type Manager struct {
	cfg   Config
	media conn.Engine
	gate  Gate
	log   *slog.Logger

	mu          sync.Mutex
	active      map[string]*Room        // by lower-case alias
	resumes     map[string]*Participant // by resume token
	uploads     map[string]*Participant // by upload token
	closed      bool
	onEnd       []func(meetingID string)
	revoked     map[string]bool // device public keys (RevokeDevice)
	stopRefresh func()          // stops the pushes of fresh TURN credentials
	tickets     Tickets         // admission tickets for signed-in participants sent to other nodes (nodes.go)

	// fed connects the meetings to other nodes; nil: this node alone
	// (federation.go). Read without mu: rooms read it under their lock.
	fed      atomic.Pointer[Federation]
	endedIDs map[string]bool // meetings that ended here, whose late news from other nodes is ignored
}

// NewManager returns a manager that forwards media with the media core
// and asks gate who may enter which room.
func NewManager(cfg Config, media conn.Engine, gate Gate) *Manager {
	if cfg.ResumeWindow == 0 {
		cfg.ResumeWindow = 30 * time.Second
	}
	if cfg.WaitForHost == 0 {
		cfg.WaitForHost = 10 * time.Minute
	}
	if cfg.HostGrace == 0 {
		cfg.HostGrace = 2 * time.Minute
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.MaxParticipants == 0 {
		cfg.MaxParticipants = 100
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{cfg: cfg, media: media, gate: gate, log: log,
		active: map[string]*Room{}, resumes: map[string]*Participant{}, uploads: map[string]*Participant{}}
	if cfg.Relay != nil {
		m.stopRefresh = clock.Every(cfg.Clock, cfg.Relay.TTL()/2, m.refreshRelay)
	}
	return m
}

// iceServers are the ICE servers of a welcome or a refresh to
// participant.
func (m *Manager) iceServers(participant string) []signal.ICEServer {
	out := append([]signal.ICEServer(nil), m.cfg.ICEServers...)
	if m.cfg.Relay != nil {
		out = append(out, m.cfg.Relay.ICEServers(participant)...)
	}
	return out
}

// transportPolicy is the iceTransportPolicy of welcomes.
func (m *Manager) transportPolicy() string {
	if m.cfg.AlwaysRelay {
		return "relay"
	}
	return ""
}

// refreshRelay sends every participant in a meeting fresh TURN
// credentials before those it holds expire, so that an ICE restart late
// in a long meeting can still open allocations.
func (m *Manager) refreshRelay() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	var all []*Participant
	for _, r := range m.active {
		all = append(all, r.everyone()...)
	}
	m.mu.Unlock()
	for _, p := range all {
		if p.admitted() {
			p.send(&signal.Message{Type: signal.TypeICEServers, ICEServers: m.iceServers(p.id)})
		}
	}
}

// Participants returns how many participants are in the room now.
func (m *Manager) Participants(alias string) int {
	m.mu.Lock()
	r := m.active[strings.ToLower(alias)]
	m.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.size()
}

// Stats returns the number of meetings in progress and of participants
// in them (waiting ones included).
func (m *Manager) Stats() (meetings, participants int) {
	m.mu.Lock()
	rooms := make([]*Room, 0, len(m.active))
	for _, r := range m.active {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	for _, r := range rooms {
		// A meeting only followed for the other nodes is not hosted here.
		if n := r.size(); n > 0 {
			meetings++
			participants += n
		}
	}
	return meetings, participants
}

// MeetingOf returns the meeting instance id of the admitted participant
// holding this upload token, for file transfers; false when the token is
// unknown or its participant is not in a meeting (left, or waiting).
func (m *Manager) MeetingOf(uploadToken string) (string, bool) {
	m.mu.Lock()
	p := m.uploads[uploadToken]
	m.mu.Unlock()
	if p == nil || !p.admitted() {
		return "", false
	}
	return p.room.id, true
}

// UploaderOf is MeetingOf, and also names the participant holding the
// token, whose files count against its own quota.
func (m *Manager) UploaderOf(uploadToken string) (meetingID, participantID string, ok bool) {
	m.mu.Lock()
	p := m.uploads[uploadToken]
	m.mu.Unlock()
	if p == nil || !p.admitted() {
		return "", "", false
	}
	return p.room.id, p.id, true
}

// OnMeetingEnd registers f to be called with the id of each meeting
// instance that ends (its last participant left, or a host ended it).
func (m *Manager) OnMeetingEnd(f func(meetingID string)) {
	m.mu.Lock()
	m.onEnd = append(m.onEnd, f)
	m.mu.Unlock()
}

// Close ends every meeting: participants are told the server is shutting
// down and their connections closed.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	if m.stopRefresh != nil {
		m.stopRefresh()
	}
	var all []*Participant
	for _, r := range m.active {
		all = append(all, r.everyone()...)
	}
	m.mu.Unlock()
	for _, p := range all {
		p.leave("server-shutdown")
	}
}

// DisconnectUser ends at once every meeting connection of the account
// userID (disabled or deleted by an administrator): each gets `bye` with
// reason and leaves. It returns how many there were.
func (m *Manager) DisconnectUser(userID int64, reason string) int {
	if userID == 0 {
		return 0
	}
	m.mu.Lock()
	var ps []*Participant
	remote := 0
	for _, r := range m.active {
		for _, p := range r.everyone() {
			if p.userID == userID {
				ps = append(ps, p)
			}
		}
	}
	m.mu.Unlock()
	// The account's participants on other nodes (a signed-in account
	// sent there with a ticket): their node ends them.
	for _, r := range m.rooms() {
		r.mu.Lock()
		for id, x := range r.remote {
			if x.m.UserID == userID {
				r.sendToLocked(x.node, Event{Kind: EventCommand, Type: commandDisconnect, Target: id, Reason: reason})
				remote++
			}
		}
		r.mu.Unlock()
	}
	for _, p := range ps {
		p.leave(reason)
	}
	return len(ps) + remote
}

// AccountIDs returns the accounts that have a participant in a meeting
// now (waiting ones included), each once.
func (m *Manager) AccountIDs() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[int64]bool{}
	var out []int64
	for _, r := range m.active {
		for _, p := range r.everyone() {
			if p.userID != 0 && !seen[p.userID] {
				seen[p.userID] = true
				out = append(out, p.userID)
			}
		}
		r.mu.Lock()
		for _, x := range r.remote {
			if id := x.m.UserID; id != 0 && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
		r.mu.Unlock()
	}
	return out
}

// Client is who is at the other end of a signaling connection.
type Client struct {
	Addr    netip.Addr
	Account *Account // signed-in account, or nil
	// Gateway, when set, says that the connection is a gateway that
	// breaks end-to-end encryption (signal.GatewaySIP: a telephone
	// dialled in through the SIP edge). It comes from the node's own
	// code, never from the wire. A gateway enters only with a host's
	// consent (it knocks even when the room is open, and waits for a
	// host when none is present), is never a host, and every member is
	// told what it is.
	Gateway string
	// Media is this participant's media core when it is not the node's
	// (a gateway's own conn.Engine); nil means the node's.
	Media conn.Engine
}

// Serve runs one signaling connection until it closes.
func (m *Manager) Serve(ctx context.Context, c Conn, client Client) {
	conn := newConnection(c)
	defer func() {
		// Let the write loop deliver what is queued (a final error or
		// bye) and close the connection before the caller tears it down.
		conn.close(CloseNormal, "")
		<-conn.ended
	}()
	lim := newRateLimiter(50, 200)
	var p *Participant
	var lastLimitNotice time.Time
	for {
		data, err := c.ReadMessage(ctx)
		if errors.Is(err, ErrMessageTooLarge) {
			conn.send(signal.ErrorMessage(signal.Fatalf(signal.CodeTooLarge,
				"Message exceeds the limit of %d bytes.", signal.MaxMessageSize), nil))
			conn.close(CloseTooLarge, "message too large")
			break
		}
		if err != nil {
			break
		}
		if now := m.cfg.Clock.Now(); !lim.allow(now) {
			if now.Sub(lastLimitNotice) > time.Second {
				lastLimitNotice = now
				conn.send(signal.ErrorMessage(signal.Errorf(signal.CodeRateLimited,
					"Too many messages; some were dropped. Slow down."), nil))
			}
			continue
		}
		msg, err := signal.Decode(data)
		if err != nil {
			conn.send(signal.ErrorMessage(err, msg))
			if isFatal(err) {
				conn.close(ClosePolicy, "protocol error")
				break
			}
			continue
		}
		if msg.Type == signal.TypePing {
			conn.send(&signal.Message{Type: signal.TypePong, ID: msg.ID})
			continue
		}
		if p == nil {
			if msg.Type != signal.TypeJoin {
				conn.send(signal.ErrorMessage(signal.Errorf(signal.CodeNotJoined,
					"Send a join message first."), msg))
				continue
			}
			if url := m.direct(msg, client); url != "" {
				redirect := &signal.Message{Type: signal.TypeRedirect, URL: url, Reason: RedirectSelection}
				if redirect.Ticket, err = m.ticketFor(ctx, msg, client, url); err != nil {
					conn.send(signal.ErrorMessage(err, msg))
					conn.close(ClosePolicy, "join refused")
					break
				}
				conn.send(redirect)
				break
			}
			joined := func() {}
			if j, ok := c.(interface{ Joined() }); ok {
				joined = j.Joined // the transport's deadline to join is met
			}
			p, err = m.join(ctx, conn, msg, client, joined)
			if err != nil {
				conn.send(signal.ErrorMessage(err, msg))
				if isFatal(err) {
					conn.close(ClosePolicy, "join refused")
					break
				}
			}
			continue
		}
		if msg.Type == signal.TypeJoin {
			conn.send(signal.ErrorMessage(signal.Errorf(signal.CodeAlreadyJoined,
				"This connection has already joined a meeting."), msg))
			continue
		}
		if err := p.handle(conn, msg); err != nil {
			conn.send(signal.ErrorMessage(err, msg))
		}
		if msg.Type == signal.TypeLeave {
			break
		}
	}
	if p != nil {
		p.detach(conn)
	}
}

func isFatal(err error) bool {
	var pe *signal.Error
	return errors.As(err, &pe) && pe.Fatal
}

// join admits the connection's participant, or resumes it. joined runs
// once the participant is in, before its first message (welcome or
// waiting) is sent, so that a client answering that message is never
// held to the deadline to join.
func (m *Manager) join(ctx context.Context, conn *connection, msg *signal.Message, client Client, joined func()) (*Participant, error) {
	var taken *Member
	if msg.Resume != "" {
		m.mu.Lock()
		p := m.resumes[msg.Resume]
		r := m.active[strings.ToLower(msg.Room)]
		m.mu.Unlock()
		if p != nil && strings.EqualFold(p.room.alias, msg.Room) {
			// A valid token: the deadline is lifted before attach sends
			// the welcome (if attach fails, a fresh join follows).
			joined()
		}
		if p != nil && strings.EqualFold(p.room.alias, msg.Room) && p.attach(conn) {
			m.log.Info("participant resumed", "room", p.room.alias, "participant", p.id, "remote", client.Addr)
			return p, nil
		}
		// A participant of another node, coming here because its node
		// went down or is draining: it gets its role back.
		if p == nil && r != nil {
			r.mu.Lock()
			if mem, ok := r.takeOverLocked(msg.Resume); ok {
				taken = &mem
			}
			r.mu.Unlock()
		}
		// Unknown or expired: fall through to a fresh join.
	}
	var adm Admission
	if taken != nil {
		adm = m.takenAdmission(msg.Room, *taken)
		m.log.Info("participant taken over from another node", "room", msg.Room, "was", taken.Info.ID, "remote", client.Addr)
	} else {
		var err error
		adm, err = m.enter(ctx, Entry{Room: msg.Room, PIN: msg.PIN, Account: client.Account, Addr: client.Addr, Ticket: msg.Ticket})
		if err != nil {
			return nil, err
		}
		if client.Account == nil && adm.Account != nil {
			client.Account = adm.Account // the ticket's
		}
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, signal.Fatalf(signal.CodeInternal, "The server is shutting down.")
	}
	key := strings.ToLower(adm.Alias)
	r := m.active[key]
	if r != nil && adm.Meeting != "" {
		r.mu.Lock()
		other := r.id != adm.Meeting
		r.mu.Unlock()
		if other {
			m.mu.Unlock()
			return nil, signal.Fatalf(signal.CodeTicketRefused, "The meeting this sign-in pass was for has ended. Join again from the meeting link.")
		}
	}
	if r == nil {
		r = newRoom(m, adm)
		m.active[key] = r
	}
	if client.Gateway != "" {
		// A telephone cannot run the meeting, and its consent is the
		// host's to give: no host role, no way around the lobby.
		adm.Role = min(adm.Role, RoleParticipant)
		adm.BypassLock = false
	}
	p := &Participant{
		gateway: client.Gateway,
		media:   client.Media,
		id:      randomHex(8),
		name:    strings.TrimSpace(msg.Name),
		resume:  randomToken(),
		upload:  randomToken(),
		role:    adm.Role,
		addr:    client.Addr,
		source:  adm.Source,
		room:    r,
		mgr:     m,
		log:     m.log,
	}
	if client.Account != nil {
		p.userID = client.Account.ID
	}
	if taken != nil {
		p.replaces = taken.Info.ID
		if p.name == "" {
			p.name = taken.Info.Name
		}
		if p.userID == 0 {
			p.userID = taken.UserID
		}
	}
	if err := r.reserve(p, m.cfg.MaxParticipants); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	m.resumes[p.resume] = p
	m.uploads[p.upload] = p
	m.mu.Unlock()
	if taken != nil && taken.Info.Muted {
		p.forcedMute = true
	}

	p.mu.Lock()
	p.conn = conn
	p.mu.Unlock()
	joined()
	if err := r.enter(p, adm); err != nil {
		m.forget(p)
		m.log.Error("participant setup failed", "room", r.alias, "err", err)
		return nil, signal.Fatalf(signal.CodeInternal, "The server could not set up media for you. Try again later.")
	}
	m.log.Info("participant entered", "room", r.alias, "participant", p.id, "role", adm.Role, "remote", client.Addr)
	return p, nil
}

// enter asks the gate, and turns its refusals into the join's errors.
func (m *Manager) enter(ctx context.Context, e Entry) (Admission, error) {
	adm, err := m.gate.Enter(ctx, e)
	var tr *TicketRefused
	switch {
	case err == nil:
		return adm, nil
	case errors.Is(err, ErrUnavailable):
		return adm, signal.Fatalf(signal.CodeRoomUnavailable, unavailableMessage)
	case errors.As(err, &tr):
		m.log.Info("admission ticket refused", "room", e.Room, "reason", tr.Reason, "remote", e.Addr)
		return adm, signal.Fatalf(signal.CodeTicketRefused, "%s", tr.Message)
	}
	m.log.Error("room admission failed", "room", e.Room, "err", err)
	return adm, signal.Fatalf(signal.CodeInternal, "The server could not look up this meeting. Try again later.")
}

// forget drops a participant's resume token and, if its room became empty,
// the room.
func (m *Manager) forget(p *Participant) {
	if m.cfg.Relay != nil {
		m.cfg.Relay.Release(p.id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.resumes, p.resume)
	delete(m.uploads, p.upload)
	key := strings.ToLower(p.room.alias)
	r := p.room
	if m.active[key] != r {
		return
	}
	r.mu.Lock()
	empty := len(r.order)+len(r.waiting)+r.joining == 0 && len(r.remote) == 0 && len(r.orphans) == 0
	r.mu.Unlock()
	if empty {
		delete(m.active, key)
		r.stopTimers()
		m.endedLocked(r)
	}
}

// endedLocked tells the OnMeetingEnd callbacks, outside the lock.
func (m *Manager) endedLocked(r *Room) {
	for _, f := range m.onEnd {
		go f(r.id)
	}
}

// endRoom forgets a meeting that ended, so that the next entrant starts a
// new one (with fresh bans and settings).
func (m *Manager) endRoom(r *Room) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := strings.ToLower(r.alias)
	if m.endedIDs == nil {
		m.endedIDs = map[string]bool{}
	}
	m.endedIDs[r.id] = true
	if m.active[key] == r {
		delete(m.active, key)
		m.endedLocked(r)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// rateLimiter is a token bucket.
type rateLimiter struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newRateLimiter(rate, burst float64) *rateLimiter {
	return &rateLimiter{rate: rate, burst: burst, tokens: burst}
}

// take takes cost tokens if there are that many.
func (l *rateLimiter) take(now time.Time, cost float64) bool {
	l.refill(now)
	if l.tokens < cost {
		return false
	}
	l.tokens -= cost
	return true
}

func (l *rateLimiter) refill(now time.Time) {
	if !l.last.IsZero() {
		l.tokens += now.Sub(l.last).Seconds() * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
	}
	l.last = now
}

func (l *rateLimiter) allow(now time.Time) bool {
	if !l.last.IsZero() {
		l.tokens += now.Sub(l.last).Seconds() * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
