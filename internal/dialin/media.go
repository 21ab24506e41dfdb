package dialin

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"conclave/internal/client"
	"conclave/internal/conn"
)

// The gateway's media core (a conn.Engine of one participant): what the
// telephone says goes into a local track of the node's media core; what
// the others say comes from their audio tracks as sinks. The room sees a
// publisher and a subscriber like any other.

// opusPayloadType is written in the local track's packets; the media core
// rewrites it for each subscriber.
const opusPayloadType = 111

// sinkQueue is how many packets of one track may wait for decryption (a
// second of 20 ms frames); beyond that they are dropped, never waited
// for: the media core calls the sinks on its forwarding goroutine.
const sinkQueue = 50

// silenceSwitch is how long the telephone's current speaker may be silent
// before another participant who speaks takes over, while the room names
// no active speaker.
const silenceSwitch = 600 * time.Millisecond

var errNoOffers = errors.New("a telephone gateway neither makes nor takes SDP offers: its media is its own")

type legMedia struct {
	g *Gateway

	mu    sync.Mutex
	track conn.LocalTrack // nil until admitted
	pub   *legPublisher
	subs  []*legSubscriber
	self  string
	// what goes into the meeting
	seq uint16
	buf []byte
	enc []byte

	// what goes to the telephone: one speaker at a time
	fwdMu   sync.Mutex
	speaker atomic.Value // string: the room's active speaker
	current string       // whose frames go to the telephone now
	heard   map[string]time.Time
	lastIn  uint32    // the current speaker's last timestamp
	lastOut uint32    // the last timestamp given to the telephone
	lastAt  time.Time // when
	offset  uint32    // out = in + offset for the current speaker
	started bool
	dec     []byte
}

func newLegMedia(g *Gateway) *legMedia {
	m := &legMedia{g: g, heard: map[string]time.Time{}, buf: make([]byte, 0, 1500), enc: make([]byte, 0, 1500),
		dec: make([]byte, 0, 1500), seq: uint16(rand.Uint32())}
	m.speaker.Store("")
	return m
}

func (m *legMedia) setSelf(id string) {
	m.mu.Lock()
	m.self = id
	m.mu.Unlock()
}

// NewPublisher implements conn.Engine: the telephone's voice, as a local
// track of the node's media core.
func (m *legMedia) NewPublisher(participant string, events conn.PublisherEvents) (conn.Publisher, error) {
	t, err := m.g.cfg.Media.NewLocalTrack(participant, conn.Microphone, "audio/opus")
	if err != nil {
		return nil, err
	}
	p := &legPublisher{m: m, track: t, events: events}
	m.mu.Lock()
	m.track, m.pub = t, p
	m.mu.Unlock()
	return p, nil
}

// NewSubscriber implements conn.Engine: the others' audio, as sinks.
func (m *legMedia) NewSubscriber(conn.SubscriberEvents) (conn.Subscriber, error) {
	s := &legSubscriber{m: m, sinks: map[string]*legSink{}}
	m.mu.Lock()
	m.subs = append(m.subs, s)
	m.mu.Unlock()
	return s, nil
}

// close ends the local track and the sinks (the room closes them too
// when the gateway leaves; this covers a gateway that never got in).
func (m *legMedia) close() {
	m.mu.Lock()
	pub, subs := m.pub, m.subs
	m.mu.Unlock()
	if pub != nil {
		pub.Close()
	}
	for _, s := range subs {
		s.Close()
	}
}

// fromPhone encrypts one Opus frame of the telephone into SFrame and
// writes it into the local track.
func (m *legMedia) fromPhone(opus []byte, timestamp uint32) {
	if m.write(opus, timestamp) {
		// Outside m.mu: the room takes its own lock to subscribe the
		// others, and holds it when it makes the gateway's media.
		m.mu.Lock()
		pub := m.pub
		m.mu.Unlock()
		pub.started()
	}
}

// write encrypts and forwards one frame; it reports whether it went out.
func (m *legMedia) write(opus []byte, timestamp uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.track == nil || m.self == "" || len(opus) == 0 {
		return false
	}
	enc, err := m.g.opts.SendTransform.TransformFrame(client.FrameInfo{Codec: client.CodecOpus, Participant: m.self,
		Source: string(conn.Microphone), Timestamp: timestamp}, opus, m.enc[:0])
	if err != nil {
		return false // no key yet: dropped and counted by the Session
	}
	m.enc = enc[:0]
	m.seq++
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: opusPayloadType, SequenceNumber: m.seq,
		Timestamp: timestamp, SSRC: 1}, Payload: enc}
	n, err := pkt.MarshalTo(m.buf[:cap(m.buf)])
	if err != nil {
		return false
	}
	return m.track.WriteRTP(m.buf[:n]) == nil
}

// setSpeaker records the room's active speaker.
func (m *legMedia) setSpeaker(id string) { m.speaker.Store(id) }

// forget drops a participant that left.
func (m *legMedia) forget(id string) {
	m.fwdMu.Lock()
	delete(m.heard, id)
	if m.current == id {
		m.current = ""
	}
	m.fwdMu.Unlock()
}

// toPhone decides whether a decrypted frame of participant goes to the
// telephone: the room's active speaker's do; while the room names none
// (or it sends nothing), the participant heard last keeps the line until
// it has been silent for silenceSwitch. Timestamps are rewritten so that
// the telephone sees one continuous stream.
func (m *legMedia) toPhone(participant string, opus []byte, ts uint32) {
	now := m.g.cfg.Clock.Now()
	m.fwdMu.Lock()
	defer m.fwdMu.Unlock()
	m.heard[participant] = now
	spk, _ := m.speaker.Load().(string)
	switch {
	case participant == m.current:
	case spk == participant:
		m.switchTo(participant, ts, now)
	case m.current == "" || now.Sub(m.heard[m.current]) > silenceSwitch:
		if spk == "" || now.Sub(m.heard[spk]) > silenceSwitch {
			m.switchTo(participant, ts, now)
		}
	}
	if participant != m.current {
		return
	}
	out := ts + m.offset
	m.lastIn, m.lastOut, m.lastAt = ts, out, now
	m.g.cfg.ToPhone(opus, out)
}

// switchTo makes participant's frames the telephone's, continuing the
// outgoing timestamps from where the last speaker left them plus the
// time elapsed since.
func (m *legMedia) switchTo(participant string, ts uint32, now time.Time) {
	m.current = participant
	if !m.started {
		m.started = true
		m.offset = 0
		return
	}
	elapsed := now.Sub(m.lastAt)
	if elapsed < 20*time.Millisecond {
		elapsed = 20 * time.Millisecond
	}
	next := m.lastOut + uint32(elapsed.Seconds()*48000)
	m.offset = next - ts
}

// legPublisher is the telephone's publishing side.
type legPublisher struct {
	m      *legMedia
	track  conn.LocalTrack
	events conn.PublisherEvents

	mu     sync.Mutex
	added  bool
	closed bool
}

// started reports the track to the room once its first packet went out
// (conn.PublisherEvents: a track is added when it receives media).
func (p *legPublisher) started() {
	p.mu.Lock()
	if p.added || p.closed {
		p.mu.Unlock()
		return
	}
	p.added = true
	p.mu.Unlock()
	p.events.TrackAdded(p.track)
}

func (p *legPublisher) HandleOffer(string, map[string]conn.Source) (string, error) {
	return "", errNoOffers
}
func (p *legPublisher) AddCandidate(conn.ICECandidate) error { return errNoOffers }

func (p *legPublisher) Tracks() []conn.UpTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.added || p.closed {
		return nil
	}
	return []conn.UpTrack{p.track}
}

func (p *legPublisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	added := p.added
	p.mu.Unlock()
	p.track.Close()
	if added {
		p.events.TrackRemoved(p.track)
	}
	return nil
}

// legSubscriber takes the others' audio tracks as sinks.
type legSubscriber struct {
	m *legMedia

	mu     sync.Mutex
	sinks  map[string]*legSink // by track id
	closed bool
}

func (s *legSubscriber) AddTrack(t conn.UpTrack, _ conn.TrackOptions) error {
	if t.Kind() != conn.Audio {
		return nil // a telephone hears; video is not sent to it
	}
	st, ok := t.(conn.SinkTrack)
	if !ok {
		return errors.New("dial-in: the media core does not hand this track to sinks")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.sinks[t.ID()] != nil {
		return nil
	}
	k := &legSink{m: s.m, track: st, participant: t.Participant(), queue: make(chan []byte, sinkQueue), done: make(chan struct{})}
	s.sinks[t.ID()] = k
	go k.run()
	st.AddSink(k)
	return nil
}

func (s *legSubscriber) RemoveTrack(t conn.UpTrack) {
	s.mu.Lock()
	k := s.sinks[t.ID()]
	delete(s.sinks, t.ID())
	s.mu.Unlock()
	if k != nil {
		k.stop()
	}
}

func (s *legSubscriber) HandleAnswer(string) error            { return errNoOffers }
func (s *legSubscriber) AddCandidate(conn.ICECandidate) error { return nil }
func (s *legSubscriber) RestartICE()                          {}
func (s *legSubscriber) SetTrackSize(string, int, int) bool   { return false }
func (s *legSubscriber) Outstanding() (conn.Offer, bool)      { return conn.Offer{}, false }
func (s *legSubscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	sinks := s.sinks
	s.sinks = map[string]*legSink{}
	s.mu.Unlock()
	for _, k := range sinks {
		k.stop()
	}
	return nil
}

// legSink receives one audio track's packets on the media core's
// forwarding goroutine and decrypts them on its own.
type legSink struct {
	m           *legMedia
	track       conn.SinkTrack
	participant string
	queue       chan []byte
	done        chan struct{}
	once        sync.Once
	dropped     atomic.Uint64
}

// WriteRTP implements conn.Sink: a copy of the packet waits for run.
func (k *legSink) WriteRTP(packet []byte) {
	b := append([]byte(nil), packet...)
	select {
	case k.queue <- b:
	default:
		k.dropped.Add(1)
	}
}

func (k *legSink) stop() {
	k.once.Do(func() {
		k.track.RemoveSink(k)
		close(k.done)
	})
}

func (k *legSink) run() {
	var pkt rtp.Packet
	var dst []byte
	for {
		select {
		case b := <-k.queue:
			if pkt.Unmarshal(b) != nil || len(pkt.Payload) == 0 {
				continue
			}
			out, err := k.m.g.opts.ReceiveTransform.TransformFrame(client.FrameInfo{Codec: client.CodecOpus,
				Participant: k.participant, Source: string(conn.Microphone), Timestamp: pkt.Timestamp}, pkt.Payload, dst[:0])
			if err != nil {
				continue // no key, or not authentic: counted by the Session
			}
			dst = out
			k.m.toPhone(k.participant, out, pkt.Timestamp)
		case <-k.done:
			return
		}
	}
}
