package meeting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/conn"
	"conclave/internal/signal"
	"conclave/internal/testutil/fakeclock"
)

// A fake media core (conn.Engine) and fake signaling connections, so that
// the room logic is tested without WebRTC or WebSockets: the tests see
// what the room asks of the media core (who receives which track, with
// which options; which tracks are muted) and what each participant's
// client is sent.

// fakeEngine makes fake publishers and subscribers, one per participant.
type fakeEngine struct {
	mu   sync.Mutex
	pubs map[string]*fakePublisher // by participant id
	subs []*fakeSubscriber
}

func newFakeEngine() *fakeEngine { return &fakeEngine{pubs: map[string]*fakePublisher{}} }

func (e *fakeEngine) NewPublisher(participant string, events conn.PublisherEvents) (conn.Publisher, error) {
	p := &fakePublisher{participant: participant, events: events, tracks: map[string]*fakeTrack{}}
	e.mu.Lock()
	e.pubs[participant] = p
	e.mu.Unlock()
	return p, nil
}

func (e *fakeEngine) NewSubscriber(events conn.SubscriberEvents) (conn.Subscriber, error) {
	s := &fakeSubscriber{events: events, tracks: map[string]fakeSubscription{}, sizes: map[string][2]int{}}
	e.mu.Lock()
	e.subs = append(e.subs, s)
	e.mu.Unlock()
	return s, nil
}

// sub returns the i-th subscriber made (one per participant admitted, in
// order).
func (e *fakeEngine) sub(i int) *fakeSubscriber {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subs[i]
}

func (e *fakeEngine) publisher(t *testing.T, participant string) *fakePublisher {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pubs[participant]
	if p == nil {
		t.Fatalf("no publisher was made for %s", participant)
	}
	return p
}

// fakePublisher is a participant's publishing connection; the test makes
// its tracks start and stop.
type fakePublisher struct {
	participant string
	events      conn.PublisherEvents

	mu     sync.Mutex
	tracks map[string]*fakeTrack // by mid
	offers int
	closed bool
}

func (p *fakePublisher) HandleOffer(sdp string, sources map[string]conn.Source) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offers++
	return "answer to " + sdp, nil
}

func (p *fakePublisher) AddCandidate(conn.ICECandidate) error { return nil }

func (p *fakePublisher) Tracks() []conn.UpTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []conn.UpTrack
	for _, t := range p.tracks {
		out = append(out, t)
	}
	return out
}

func (p *fakePublisher) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *fakePublisher) Close() error {
	p.mu.Lock()
	p.closed = true
	tracks := p.tracks
	p.tracks = map[string]*fakeTrack{}
	p.mu.Unlock()
	for _, t := range tracks {
		p.events.TrackRemoved(t)
	}
	return nil
}

// start makes a track of source start receiving media, as the media core
// reports it.
func (p *fakePublisher) start(mid string, source conn.Source) *fakeTrack {
	kind := conn.Video
	if source == conn.Microphone || source == conn.ScreenAudio {
		kind = conn.Audio
	}
	t := &fakeTrack{id: p.participant + "-" + mid, participant: p.participant, source: source, kind: kind, mid: mid}
	p.mu.Lock()
	p.tracks[mid] = t
	p.mu.Unlock()
	p.events.TrackAdded(t)
	return t
}

// stop makes a track stop.
func (p *fakePublisher) stop(t *fakeTrack) {
	p.mu.Lock()
	delete(p.tracks, t.mid)
	p.mu.Unlock()
	p.events.TrackRemoved(t)
}

// fakeTrack is an up track; its audio level is set by the test.
type fakeTrack struct {
	id, participant, mid string
	source               conn.Source
	kind                 conn.Kind

	mu        sync.Mutex
	muted     bool
	level     float64
	packets   uint64
	keyFrames int
}

func (t *fakeTrack) ID() string          { return t.id }
func (t *fakeTrack) Participant() string { return t.participant }
func (t *fakeTrack) Source() conn.Source { return t.source }
func (t *fakeTrack) Kind() conn.Kind     { return t.kind }
func (t *fakeTrack) Codec() string       { return "audio/opus" }
func (t *fakeTrack) Mid() string         { return t.mid }

func (t *fakeTrack) SetMuted(m bool) {
	t.mu.Lock()
	t.muted = m
	t.mu.Unlock()
}

func (t *fakeTrack) isMuted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.muted
}

func (t *fakeTrack) RequestKeyFrame() {
	t.mu.Lock()
	t.keyFrames++
	t.mu.Unlock()
}

// AudioLevel returns the level the test set, as if packets carrying it
// had arrived since the last call.
func (t *fakeTrack) AudioLevel() (float64, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.level, t.packets
}

func (t *fakeTrack) setLevel(l float64) {
	t.mu.Lock()
	t.level, t.packets = l, 50
	t.mu.Unlock()
}

// fakeSubscription is one track a fake subscriber receives.
type fakeSubscription struct {
	track conn.UpTrack
	opts  conn.TrackOptions
}

// fakeSubscriber is a participant's receiving connection.
type fakeSubscriber struct {
	events conn.SubscriberEvents

	mu     sync.Mutex
	tracks map[string]fakeSubscription // by track id
	sizes  map[string][2]int           // by mid
	closed bool
}

func (s *fakeSubscriber) AddTrack(t conn.UpTrack, opts conn.TrackOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.tracks[t.ID()]; ok {
		opts.Stream = old.opts.Stream // fixed at the first add, as the contract says
	}
	s.tracks[t.ID()] = fakeSubscription{track: t, opts: opts}
	return nil
}

func (s *fakeSubscriber) RemoveTrack(t conn.UpTrack) {
	s.mu.Lock()
	delete(s.tracks, t.ID())
	s.mu.Unlock()
}

func (s *fakeSubscriber) HandleAnswer(string) error            { return nil }
func (s *fakeSubscriber) AddCandidate(conn.ICECandidate) error { return nil }
func (s *fakeSubscriber) RestartICE()                          {}
func (s *fakeSubscriber) Outstanding() (conn.Offer, bool)      { return conn.Offer{}, false }

func (s *fakeSubscriber) SetTrackSize(mid string, w, h int) bool {
	s.mu.Lock()
	s.sizes[mid] = [2]int{w, h}
	s.mu.Unlock()
	return true
}

func (s *fakeSubscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.tracks = map[string]fakeSubscription{}
	s.mu.Unlock()
	return nil
}

func (s *fakeSubscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// forwarding reports whether t reaches this subscriber: subscribed, and
// not muted at the source.
func (s *fakeSubscriber) forwarding(t *fakeTrack) bool {
	s.mu.Lock()
	_, ok := s.tracks[t.id]
	s.mu.Unlock()
	return ok && !t.isMuted()
}

func (s *fakeSubscriber) options(t *fakeTrack) (conn.TrackOptions, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.tracks[t.id]
	return sub.opts, ok
}

// pipeConn is a signaling connection whose client is the test.
type pipeConn struct {
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   sync.Once
}

func newPipeConn() *pipeConn {
	return &pipeConn{in: make(chan []byte, 64), out: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (c *pipeConn) ReadMessage(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	case <-c.closed:
		return nil, fmt.Errorf("closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *pipeConn) WriteMessage(ctx context.Context, data []byte) error {
	select {
	case c.out <- data:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *pipeConn) Close(CloseStatus, string) error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// PINs of roleGate.
const (
	hostPIN  = "111111"
	guestPIN = "222222"
)

// roleGate admits everyone into any room, with the role the PIN gives
// (hostPIN, guestPIN; anything else: participant).
type roleGate struct {
	hostRequired bool
	rules        Rules
}

func (g roleGate) Enter(_ context.Context, e Entry) (Admission, error) {
	role := RoleParticipant
	switch e.PIN {
	case hostPIN:
		role = RoleHost
	case guestPIN:
		role = RoleGuest
	}
	return Admission{Alias: e.Room, Name: "Room " + e.Room, Role: role, BypassLock: role == RoleHost,
		HostRequired: g.hostRequired, GuestsMayUnmute: g.rules.GuestsMayUnmute, GuestsMayPresent: g.rules.GuestsMayPresent}, nil
}

// world is a node's meeting manager on the fake media core.
type world struct {
	t     *testing.T
	m     *Manager
	media *fakeEngine
	clock *fakeclock.Clock
}

func newWorld(t *testing.T, gate Gate) *world {
	t.Helper()
	w := &world{t: t, media: newFakeEngine(), clock: fakeclock.New(time.Unix(1_800_000_000, 0))}
	w.m = NewManager(Config{Clock: w.clock, Logger: slog.New(slog.DiscardHandler),
		Speaker: SpeakerConfig{Interval: 200 * time.Millisecond, Hold: time.Second, Smoothing: 1}}, w.media, gate)
	t.Cleanup(w.m.Close)
	return w
}

// client is one participant's signaling client.
type client struct {
	t       *testing.T
	name    string
	id      string
	c       *pipeConn
	done    chan struct{}
	pending []signal.Message // read by sync, not yet by next
}

// join connects and joins room with pin; it returns the first answer
// (welcome or waiting) once the server has handled the join in full.
func (w *world) join(room, name, pin string) (*client, signal.Message) {
	w.t.Helper()
	return w.joinAs(room, name, pin, Client{})
}

// joinAs is join for a connection the node knows more about (an account,
// a gateway).
func (w *world) joinAs(room, name, pin string, cl Client) (*client, signal.Message) {
	w.t.Helper()
	c := &client{t: w.t, name: name, c: newPipeConn(), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(c.done)
		w.m.Serve(ctx, c.c, cl)
	}()
	w.t.Cleanup(func() {
		cancel()
		<-c.done
	})
	c.send(fmt.Sprintf(`{"v":1,"type":"join","room":%q,"name":%q,"pin":%q}`, room, name, pin))
	m := c.next()
	if m.Type == signal.TypeError {
		w.t.Fatalf("%s's join refused: %s %s", name, m.Code, m.Text)
	}
	if m.Self != nil {
		c.id = m.Self.ID
	}
	c.sync()
	return c, m
}

// sync waits until the server has handled everything sent so far on this
// connection (a ping's answer comes after), keeping the messages that came
// meanwhile for next. A bye ends the wait too: the server answers nothing
// after it, so a ping that was still queued gets no pong.
func (c *client) sync() {
	c.t.Helper()
	c.send(`{"v":1,"type":"ping","id":"sync"}`)
	var got []signal.Message
	for {
		m := c.read()
		if m.Type == signal.TypePong && m.ID == "sync" {
			c.pending = append(c.pending, got...)
			return
		}
		got = append(got, m)
		if m.Type == signal.TypeBye {
			c.pending = append(c.pending, got...)
			return
		}
	}
}

func (c *client) send(raw string) {
	c.c.in <- []byte(raw)
}

// next returns the next message that is not of a type in skip.
func (c *client) next(skip ...string) signal.Message {
	c.t.Helper()
	for {
		m := c.read()
		skipped := false
		for _, s := range skip {
			skipped = skipped || m.Type == s
		}
		if !skipped {
			return m
		}
	}
}

// read returns the next message.
func (c *client) read() signal.Message {
	c.t.Helper()
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending = c.pending[1:]
		return m
	}
	select {
	case data := <-c.c.out:
		var m signal.Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.t.Fatalf("%s got invalid JSON %q: %v", c.name, data, err)
		}
		return m
	case <-time.After(5 * time.Second):
		c.t.Fatalf("%s: no message within 5 s", c.name)
	}
	panic("unreachable")
}

// quiet checks that nothing but what skip names arrives before the answer
// to a ping.
func (c *client) quiet(skip ...string) {
	c.t.Helper()
	c.send(`{"v":1,"type":"ping","id":"quiet"}`)
	for {
		m := c.next(skip...)
		if m.Type == signal.TypePong && m.ID == "quiet" {
			return
		}
		c.t.Fatalf("%s: unexpected %s message: %+v", c.name, m.Type, m)
	}
}

func must(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

func ids(ps []signal.Participant) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return strings.Join(out, ",")
}
