// Package dialin is the gateway participant of a telephone dialled into a
// meeting (docs/sip.md, "Dial-in to meetings"): it joins the meeting in
// this process, over the signaling protocol like any client, and holds
// the meeting's end-to-end keys on the telephone's behalf, so it breaks
// end-to-end encryption and every member is told so.
//
// It plugs into the room as a participant whose media core is its own
// (a conn.Engine): its publisher is a local track of the node's media
// core (conn.LocalTrack) into which it writes the telephone's Opus
// frames, encrypted into SFrame with the sender key of its
// internal/client/secure Session; its subscriber takes the others' audio
// tracks as sinks (conn.SinkTrack), decrypts their SFrame with the same
// Session and hands the active speaker's Opus frames to the telephone.
// Nothing is decoded or re-encoded: Opus goes through as it came.
//
// The room admits a gateway only with a host's consent (meeting.Client
// Gateway): Join returns once a host let it in, or with the reason it was
// not.
package dialin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/clock"
	"conclave/internal/conn"
	"conclave/internal/meeting"
	"conclave/internal/signal"
)

// Meetings is where a gateway joins: *meeting.Manager is one.
type Meetings interface {
	Serve(ctx context.Context, c meeting.Conn, client meeting.Client)
}

// Errors of Join: why the telephone is not in the meeting.
var (
	// ErrUnavailable: the room refused the entry (unknown room, wrong
	// PIN, blocked room, quarantined address, account not allowed).
	ErrUnavailable = errors.New("the meeting is not available with this PIN")
	// ErrDenied: a host refused to let the telephone in.
	ErrDenied = errors.New("a host did not let the telephone in")
	// ErrNoHost: no host came, or none answered the knock, in time.
	ErrNoHost = errors.New("no host let the telephone in")
)

// Config sets up a gateway.
type Config struct {
	// Meetings is the node's meeting manager; Media its media core,
	// which must forward local tracks.
	Meetings Meetings
	Media    conn.LocalEngine
	// Room and PIN are what the telephone dialled.
	Room, PIN string
	// Name is shown to the members (the join message's name).
	Name string
	// Addr is the telephone's address (break-in rules), Account the
	// account its device certificate belongs to.
	Addr    netip.Addr
	Account *meeting.Account
	// ToPhone receives the active speaker's Opus frames, decrypted, each
	// with a 48 kHz timestamp continuous across changes of speaker. It is
	// called from one goroutine at a time and must not block for long.
	ToPhone func(opus []byte, timestamp uint32)
	// OnWaiting is told when the telephone waits ("host": for a host to
	// come; "lobby": for a host's answer).
	OnWaiting func(wait string)
	// ConsentTimeout bounds the wait for a host's consent (default 5
	// minutes); the telephone is then refused with ErrNoHost.
	ConsentTimeout time.Duration
	Clock          clock.Clock
	Logger         *slog.Logger
}

// Gateway is a telephone in a meeting.
type Gateway struct {
	cfg  Config
	log  *slog.Logger
	sec  *secure.Session
	opts client.Options // the Session's transforms and hooks

	toServer chan []byte
	limiter  *rate.Limiter
	pipe     *pipe
	cancel   context.CancelFunc
	served   chan struct{} // Serve returned

	admitted chan struct{}
	done     chan struct{}
	once     sync.Once
	reason   atomic.Value // string: why it ended

	mu     sync.Mutex
	self   string
	others map[string]signal.Participant

	media *legMedia
}

// Join enters the meeting and returns once a host admitted the
// telephone, or with why not (ErrUnavailable, ErrDenied, ErrNoHost, or
// ctx's error).
func Join(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Meetings == nil || cfg.Media == nil || cfg.ToPhone == nil {
		return nil, errors.New("dial-in: the meetings, the media core and the telephone are required")
	}
	if cfg.ConsentTimeout <= 0 {
		cfg.ConsentTimeout = 5 * time.Minute
	}
	cfg.Clock = clock.Or(cfg.Clock)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	device, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log.With("part", "dial-in", "room", cfg.Room),
		toServer: make(chan []byte, 4096), limiter: rate.NewLimiter(45, 180),
		admitted: make(chan struct{}), done: make(chan struct{}), served: make(chan struct{}),
		others: map[string]signal.Participant{}}
	// The gateway is a guest in end-to-end terms: a fresh device key per
	// call, no credential. Members see it "not certified", and marked as
	// a gateway by the server.
	g.sec, err = secure.New(secure.Config{Device: device, Name: cfg.Name, Clock: cfg.Clock,
		Logger: g.log, OnNotice: g.notice})
	if err != nil {
		return nil, err
	}
	g.sec.Wire(&g.opts)
	g.sec.Attach(transport{g})
	g.media = newLegMedia(g)

	sctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.pipe = newPipe()
	go func() {
		defer close(g.served)
		cfg.Meetings.Serve(sctx, g.pipe, meeting.Client{Addr: cfg.Addr, Account: cfg.Account,
			Gateway: signal.GatewaySIP, Media: g.media})
	}()
	go g.writeLoop(sctx)
	go g.readLoop()
	g.send(&signal.Message{Type: signal.TypeJoin, Room: cfg.Room, Name: cfg.Name, PIN: cfg.PIN})

	timeout := make(chan struct{})
	stop := cfg.Clock.AfterFunc(cfg.ConsentTimeout, func() { close(timeout) })
	defer stop()
	select {
	case <-g.admitted:
		return g, nil
	case <-g.done:
		g.shutdown()
		return nil, g.Err()
	case <-timeout:
		g.end("no-host")
		g.Leave()
		return nil, ErrNoHost
	case <-ctx.Done():
		g.end("cancelled")
		g.Leave()
		return nil, ctx.Err()
	}
}

// ID is the gateway's participant id in the meeting.
func (g *Gateway) ID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.self
}

// Done is closed when the gateway is out of the meeting.
func (g *Gateway) Done() <-chan struct{} { return g.done }

// Reason says why the gateway left ("left", "removed", "ended", ...).
func (g *Gateway) Reason() string {
	r, _ := g.reason.Load().(string)
	return r
}

// Err is the reason as an error of Join.
func (g *Gateway) Err() error {
	switch r := g.Reason(); r {
	case "room-unavailable":
		return ErrUnavailable
	case "denied":
		return ErrDenied
	case "no-host":
		return ErrNoHost
	default:
		return fmt.Errorf("dial-in: the meeting ended the call (%s)", r)
	}
}

// Leave takes the telephone out of the meeting and waits until the
// room has let it go.
func (g *Gateway) Leave() {
	g.send(&signal.Message{Type: signal.TypeLeave})
	select {
	case <-g.served:
	case <-time.After(5 * time.Second):
		// The room did not answer; end the connection from this side.
	}
	g.end("left")
	g.shutdown()
}

// shutdown stops the connection and the media once the gateway is out.
func (g *Gateway) shutdown() {
	g.cancel()
	g.pipe.Close(meeting.CloseNormal, "")
	<-g.served
	g.media.close()
}

// end records why the gateway left, once, and tells the Session.
func (g *Gateway) end(reason string) {
	g.once.Do(func() {
		g.reason.Store(reason)
		close(g.done)
		g.opts.Hooks.OnEvent(client.Event{Kind: client.Closed})
		g.log.Info("telephone left the meeting", "reason", reason)
	})
}

// FromPhone sends one of the telephone's Opus frames into the meeting,
// encrypted with the gateway's sender key. timestamp is its 48 kHz RTP
// timestamp. Frames before the gateway holds a key are dropped.
func (g *Gateway) FromPhone(opus []byte, timestamp uint32) {
	g.media.fromPhone(opus, timestamp)
}

// Sent returns how many of the telephone's frames went into the meeting
// encrypted, and how many were dropped.
func (g *Gateway) Sent() (encrypted, dropped uint64) { return g.sec.Sent() }

// Heard returns how many frames of the others were decrypted and how
// many were dropped (no key, not authentic).
func (g *Gateway) Heard() (decrypted, dropped uint64) {
	for _, s := range g.sec.Stats() {
		decrypted += s.Decrypted
		dropped += s.Dropped
	}
	return decrypted, dropped
}

func (g *Gateway) notice(n secure.Notice) {
	if n.Kind == secure.Warning {
		g.log.Warn("end-to-end encryption of the telephone's meeting", "warning", n.Text)
	}
}

// send queues a message to the room.
func (g *Gateway) send(m *signal.Message) {
	m.V = signal.Version
	data, err := json.Marshal(m)
	if err != nil {
		return
	}
	select {
	case g.toServer <- data:
	default:
		g.log.Warn("dial-in: the room is not reading; a message was dropped", "type", m.Type)
	}
}

// writeLoop hands queued messages to the room within its rate limit
// (docs/protocol.md: 50 a second, bursts of 200).
func (g *Gateway) writeLoop(ctx context.Context) {
	for {
		select {
		case data := <-g.toServer:
			if g.limiter.Wait(ctx) != nil {
				return
			}
			if !g.pipe.toServer(ctx, data) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// readLoop handles what the room says, in order.
func (g *Gateway) readLoop() {
	for {
		data, ok := g.pipe.fromServer()
		if !ok {
			g.end("connection closed")
			return
		}
		var m signal.Message
		if err := json.Unmarshal(data, &m); err != nil {
			g.log.Error("dial-in: a message from the room does not parse", "err", err)
			continue
		}
		g.handle(&m)
	}
}

func (g *Gateway) handle(m *signal.Message) {
	h := &g.opts.Hooks
	switch m.Type {
	case signal.TypeWaiting:
		g.log.Info("telephone waits for a host", "wait", m.Wait)
		if g.cfg.OnWaiting != nil {
			g.cfg.OnWaiting(m.Wait)
		}
	case signal.TypeWelcome:
		g.mu.Lock()
		g.self = m.Self.ID
		for _, p := range m.Participants {
			g.others[p.ID] = p
		}
		g.mu.Unlock()
		g.media.setSelf(m.Self.ID)
		h.OnEvent(client.Event{Kind: client.Joined, Participant: *m.Self, Meeting: m.Meeting, Others: m.Participants})
		for _, p := range m.Participants {
			h.OnEvent(client.Event{Kind: client.ParticipantJoined, Participant: p})
		}
		g.log.Info("telephone admitted", "participant", m.Self.ID)
		select {
		case <-g.admitted:
		default:
			close(g.admitted)
		}
	case signal.TypeParticipantJoined:
		g.mu.Lock()
		g.others[m.Participant.ID] = *m.Participant
		g.mu.Unlock()
		h.OnEvent(client.Event{Kind: client.ParticipantJoined, Participant: *m.Participant})
	case signal.TypeParticipantLeft:
		g.mu.Lock()
		delete(g.others, m.Participant.ID)
		g.mu.Unlock()
		g.media.forget(m.Participant.ID)
		h.OnEvent(client.Event{Kind: client.ParticipantLeft, Participant: *m.Participant})
	case signal.TypeSpeaker:
		g.media.setSpeaker(m.From)
	case signal.TypeAnnounce, signal.TypeKey, signal.TypeVerify:
		payload, err := base64.StdEncoding.DecodeString(m.Payload)
		if err != nil {
			return
		}
		switch m.Type {
		case signal.TypeAnnounce:
			h.OnAnnounce(m.From, payload)
		case signal.TypeKey:
			h.OnKey(m.From, payload)
		default:
			h.OnVerify(m.From, payload)
		}
	case signal.TypeMuted:
		g.log.Info("a host muted the telephone", "by", m.By)
	case signal.TypeBye:
		g.end(m.Reason)
	case signal.TypeError:
		if m.Fatal {
			g.end(m.Code)
			return
		}
		g.log.Warn("dial-in: the room refused a message", "code", m.Code, "message", m.Text)
	}
}

// transport carries the Session's messages to the room.
type transport struct{ g *Gateway }

func (t transport) SendAnnounce(payload []byte) error {
	t.g.send(&signal.Message{Type: signal.TypeAnnounce, Payload: base64.StdEncoding.EncodeToString(payload)})
	return nil
}

func (t transport) SendKey(to string, payload []byte) error {
	t.g.send(&signal.Message{Type: signal.TypeKey, To: to, Payload: base64.StdEncoding.EncodeToString(payload)})
	return nil
}

func (t transport) SendVerify(payload []byte) error {
	t.g.send(&signal.Message{Type: signal.TypeVerify, Payload: base64.StdEncoding.EncodeToString(payload)})
	return nil
}
