package cascade

import (
	"bufio"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/conn"
)

// Link timing: a ping each way every pingInterval; a link that hears
// nothing for deadAfter is closed (its node is then down for the
// meetings).
const (
	pingInterval = time.Second
	deadAfter    = 3 * time.Second
)

// Queue bounds: control messages must all go through (a link whose
// control backlog passes maxCtrlQueue is closed: the peer is not reading);
// media beyond maxMediaQueue is dropped, as a congested network would.
const (
	maxCtrlQueue  = 8 << 20
	maxMediaQueue = 4 << 20
)

// link is one node-to-node connection.
type link struct {
	mesh *Mesh
	peer string // the other node's name, from its certificate
	url  string // its HTTPS base URL, from its hello
	// relay is its node-to-node listener's address, from its hello ("" if
	// it has none): where this node fetches the meeting files it keeps.
	relay string
	c     *tls.Conn

	wake chan struct{}
	done chan struct{}
	once sync.Once

	qmu   sync.Mutex
	ctrl  []byte // control frames waiting
	media []byte // media frames waiting
	drops atomic.Uint64

	lastRead atomic.Int64 // unix nanoseconds

	tmu     sync.Mutex
	sent    map[uint32]conn.RelaySender // tracks this side relays, by id
	inbound map[uint32]*inTrack         // tracks the other side relays, by id
}

// inTrack is a track the other node relays.
type inTrack struct {
	room  string
	track conn.RelayedTrack
}

func newLink(m *Mesh, peer string, c *tls.Conn) *link {
	l := &link{mesh: m, peer: peer, c: c, wake: make(chan struct{}, 1), done: make(chan struct{}),
		sent: map[uint32]conn.RelaySender{}, inbound: map[uint32]*inTrack{}}
	l.lastRead.Store(time.Now().UnixNano())
	return l
}

// close ends the link; it is idempotent.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.c.Close()
	})
}

func (l *link) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// sendControl queues a control message.
func (l *link) sendControl(c *control) {
	l.qmu.Lock()
	var err error
	l.ctrl, err = appendControl(l.ctrl, c)
	over := len(l.ctrl) > maxCtrlQueue
	l.qmu.Unlock()
	if err != nil {
		l.mesh.log.Error("cluster: control message not sent", "node", l.peer, "type", c.T, "err", err)
		return
	}
	if over {
		l.mesh.log.Warn("cluster: the node does not read what this node sends; closing the link", "node", l.peer)
		l.close()
		return
	}
	l.kick()
}

// sendMedia queues an RTP packet; it drops it when the queue is full.
func (l *link) sendMedia(id uint32, layer int, raw []byte) {
	l.qmu.Lock()
	if len(l.media)+headerLen+5+len(raw) > maxMediaQueue {
		l.qmu.Unlock()
		l.drops.Add(1)
		return
	}
	l.media = appendMedia(l.media, id, layer, raw)
	l.qmu.Unlock()
	l.kick()
}

// writeLoop writes what is queued, control first, a batch per write.
func (l *link) writeLoop() {
	w := bufio.NewWriterSize(l.c, 64<<10)
	var ctrl, media []byte
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-ping.C:
			l.sendControl(&control{T: msgPing})
			if time.Since(time.Unix(0, l.lastRead.Load())) > deadAfter {
				l.mesh.log.Warn("cluster: a node stopped answering; closing the link", "node", l.peer)
				l.close()
				return
			}
			continue
		case <-l.wake:
		}
		for {
			l.qmu.Lock()
			ctrl, l.ctrl = l.ctrl, ctrl[:0]
			media, l.media = l.media, media[:0]
			l.qmu.Unlock()
			if len(ctrl) == 0 && len(media) == 0 {
				break
			}
			if _, err := w.Write(ctrl); err != nil {
				l.close()
				return
			}
			if _, err := w.Write(media); err != nil {
				l.close()
				return
			}
		}
		if err := w.Flush(); err != nil {
			l.close()
			return
		}
	}
}

// readLoop reads the other node's frames until the link ends.
func (l *link) readLoop() error {
	r := bufio.NewReaderSize(l.c, 64<<10)
	var buf []byte
	for {
		typ, payload, next, err := readFrame(r, buf)
		buf = next
		if err != nil {
			return err
		}
		l.lastRead.Store(time.Now().UnixNano())
		switch typ {
		case frameMedia:
			id, layer, raw := parseMedia(payload)
			l.tmu.Lock()
			in := l.inbound[id]
			l.tmu.Unlock()
			if in == nil {
				continue
			}
			if tap := l.mesh.cfg.Tap; tap != nil {
				tap(l.peer, in.track, raw)
			}
			l.mesh.captureRelayed(l, raw)
			in.track.WriteRTP(layer, raw)
		case frameControl:
			c, err := parseControl(payload)
			if err != nil {
				return err
			}
			if err := l.handle(c); err != nil {
				return err
			}
		}
	}
}

// handle applies one control message.
func (l *link) handle(c *control) error {
	m := l.mesh
	switch c.T {
	case msgPing, msgHello:
	case msgEvent:
		if c.Event == nil || c.Room == "" {
			return errors.New("event without a room")
		}
		m.cfg.Rooms.Deliver(l.peer, c.Room, *c.Event)
	case msgTrack:
		if c.Track == nil || c.Room == "" || c.ID == 0 {
			return errors.New("track without a room, id or description")
		}
		if c.Track.Kind != conn.Audio && c.Track.Kind != conn.Video || len(c.Track.Layers) > 4 {
			return errors.New("track of an unknown kind, or with too many layers")
		}
		t := m.cfg.Media.NewRelayed(*c.Track, trackControl{l: l, id: c.ID})
		l.tmu.Lock()
		if old := l.inbound[c.ID]; old != nil {
			old.track.End()
		}
		l.inbound[c.ID] = &inTrack{room: c.Room, track: t}
		l.tmu.Unlock()
		m.cfg.Rooms.RemoteTrack(l.peer, c.Room, c.Track.Participant, t)
	case msgUntrack:
		l.tmu.Lock()
		in := l.inbound[c.ID]
		delete(l.inbound, c.ID)
		l.tmu.Unlock()
		if in != nil {
			in.track.End()
			m.cfg.Rooms.RemoteTrackEnded(l.peer, in.room, in.track.Participant(), in.track)
		}
	case msgLayers:
		l.tmu.Lock()
		s := l.sent[c.ID]
		l.tmu.Unlock()
		if s != nil {
			s.SetLayers(c.ID, c.Active)
		}
	case msgPLI:
		l.tmu.Lock()
		s := l.sent[c.ID]
		l.tmu.Unlock()
		if s != nil {
			s.RequestKeyFrame(c.ID, c.Layer)
		}
	case msgFile:
		return l.learnFile(c)
	case msgFileWant:
		if !validToken(c.Token) {
			return errors.New("file-want without a valid token")
		}
		go l.mesh.connectBack(l, c.Token)
	}
	return nil
}

// ended withdraws the tracks the other node relayed.
func (l *link) ended() {
	l.tmu.Lock()
	inbound := l.inbound
	l.inbound = map[uint32]*inTrack{}
	l.sent = map[uint32]conn.RelaySender{}
	l.tmu.Unlock()
	for _, in := range inbound {
		in.track.End()
		l.mesh.cfg.Rooms.RemoteTrackEnded(l.peer, in.room, in.track.Participant(), in.track)
	}
}

// trackControl carries a relayed track's needs back over the link.
type trackControl struct {
	l  *link
	id uint32
}

func (t trackControl) LayersNeeded(active []bool) {
	t.l.sendControl(&control{T: msgLayers, ID: t.id, Active: active})
}

func (t trackControl) RequestKeyFrame(layer int) {
	t.l.sendControl(&control{T: msgPLI, ID: t.id, Layer: layer})
}

// roomSink is a room's relay toward the link's node.
type roomSink struct {
	l      *link
	room   string
	sender conn.RelaySender
}

func (s *roomSink) Announce(id uint32, t conn.RelayTrack) {
	s.l.tmu.Lock()
	s.l.sent[id] = s.sender
	s.l.tmu.Unlock()
	s.l.sendControl(&control{T: msgTrack, ID: id, Room: s.room, Track: &t})
}

func (s *roomSink) Withdraw(id uint32) {
	s.l.tmu.Lock()
	delete(s.l.sent, id)
	s.l.tmu.Unlock()
	s.l.sendControl(&control{T: msgUntrack, ID: id})
}

func (s *roomSink) WriteRTP(id uint32, layer int, raw []byte) { s.l.sendMedia(id, layer, raw) }
