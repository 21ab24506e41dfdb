// Package meeting runs meetings on a conference node: it admits participants
// into rooms over a signaling connection, wires their publishers and
// subscribers in the SFU, and relays signaling and opaque E2EE messages
// between members of the same room only.
package meeting

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"conclave/internal/sfu"
	"conclave/internal/signal"
	"conclave/internal/store"
)

// RoomLookup finds a room's configuration; store.Store satisfies it.
type RoomLookup interface {
	RoomByAlias(ctx context.Context, alias string) (store.Room, error)
}

// Config holds the meeting settings of a node.
type Config struct {
	// ResumeWindow is how long a participant whose connection dropped is
	// kept, waiting for it to come back with its resume token.
	ResumeWindow time.Duration
	// MaxParticipants per room.
	MaxParticipants int
	// ICEServers are sent to clients in welcome.
	ICEServers []signal.ICEServer
	// Logger receives the meeting logs; nil means slog.Default().
	Logger *slog.Logger
}

// Manager holds the active meetings of a node.
type Manager struct {
	cfg    Config
	engine *sfu.Engine
	rooms  RoomLookup
	log    *slog.Logger

	mu      sync.Mutex
	active  map[string]*Room        // by lower-case alias
	resumes map[string]*Participant // by resume token
	closed  bool
}

// NewManager returns a manager that forwards media with engine and reads
// room configuration from rooms.
func NewManager(cfg Config, engine *sfu.Engine, rooms RoomLookup) *Manager {
	if cfg.ResumeWindow == 0 {
		cfg.ResumeWindow = 30 * time.Second
	}
	if cfg.MaxParticipants == 0 {
		cfg.MaxParticipants = 100
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, engine: engine, rooms: rooms, log: log,
		active: map[string]*Room{}, resumes: map[string]*Participant{}}
}

// RoomStatus is a summary of an active meeting.
type RoomStatus struct {
	Alias        string
	Participants int
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

// Close ends every meeting: participants are told the server is shutting
// down and their connections closed.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	var all []*Participant
	for _, r := range m.active {
		all = append(all, r.members()...)
	}
	m.mu.Unlock()
	for _, p := range all {
		p.leave("server-shutdown")
	}
}

// Serve runs one signaling connection until it closes. remote is the
// client's address, for logs.
func (m *Manager) Serve(ctx context.Context, c Conn, remote string) {
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
		if !lim.allow(time.Now()) {
			if time.Since(lastLimitNotice) > time.Second {
				lastLimitNotice = time.Now()
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
			p, err = m.join(ctx, conn, msg, remote)
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

func (m *Manager) join(ctx context.Context, conn *connection, msg *signal.Message, remote string) (*Participant, error) {
	if msg.Resume != "" {
		m.mu.Lock()
		p := m.resumes[msg.Resume]
		m.mu.Unlock()
		if p != nil && strings.EqualFold(p.room.alias, msg.Room) && p.attach(conn) {
			m.log.Info("participant resumed", "room", p.room.alias, "participant", p.id, "remote", remote)
			return p, nil
		}
		// Unknown or expired: fall through to a fresh join.
	}
	cfg, err := m.rooms.RoomByAlias(ctx, msg.Room)
	if errors.Is(err, store.ErrNotFound) {
		return nil, signal.Fatalf(signal.CodeRoomNotFound, "No meeting exists at this address. Check the link you were given.")
	}
	if err != nil {
		m.log.Error("room lookup failed", "room", msg.Room, "err", err)
		return nil, signal.Fatalf(signal.CodeInternal, "The server could not look up this meeting. Try again later.")
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, signal.Fatalf(signal.CodeInternal, "The server is shutting down.")
	}
	key := strings.ToLower(cfg.Alias)
	r := m.active[key]
	if r == nil {
		r = newRoom(m, cfg.Alias, cfg.DisplayName)
		m.active[key] = r
	}
	if r.size() >= m.cfg.MaxParticipants {
		m.mu.Unlock()
		return nil, signal.Fatalf(signal.CodeRoomFull, "This meeting is full (%d participants).", m.cfg.MaxParticipants)
	}
	p := &Participant{
		id:     randomHex(8),
		name:   strings.TrimSpace(msg.Name),
		resume: randomToken(),
		room:   r,
		mgr:    m,
		log:    m.log,
	}
	m.resumes[p.resume] = p
	// Registered before the lock is released so that the room is not
	// garbage-collected by a concurrent leave.
	r.reserve()
	m.mu.Unlock()

	if err := p.start(conn); err != nil {
		m.forget(p)
		r.unreserve()
		m.log.Error("participant setup failed", "room", r.alias, "err", err)
		return nil, signal.Fatalf(signal.CodeInternal, "The server could not set up media for you. Try again later.")
	}
	m.log.Info("participant joined", "room", r.alias, "participant", p.id, "remote", remote)
	return p, nil
}

// forget drops a participant's resume token and, if its room became empty,
// the room.
func (m *Manager) forget(p *Participant) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.resumes, p.resume)
	key := strings.ToLower(p.room.alias)
	if m.active[key] == p.room && p.room.empty() {
		delete(m.active, key)
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
