package client

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"conclave/internal/signal"
)

// Recovery timing of docs/protocol.md, Reconnection; the browser's are
// the same (the "schedule" of internal/signal/testdata/messages.json).
const (
	iceRecovery      = 10 * time.Second // a failed peer connection may take this long to recover
	leaveWait        = time.Second      // how long Leave waits for bye
	publishRetries   = 3                // a refused publish offer is retried this many times
	publishRetryStep = time.Second      // the n-th retry waits n steps
)

// loopState is the part of a Session that only the session loop touches.
type loopState struct {
	ws      *wsConn // nil while disconnected
	attempt int     // reconnection attempts since the last welcome
	resume  string  // token of the latest welcome
	joined  bool    // a welcome was received once
	ended   bool
	leaving bool
	outage  bool // Reconnecting was reported and Rejoined not yet
	// alternates are the other nodes of the cluster, best first, from
	// the latest welcome (base URLs); redirected marks a join that
	// follows a node's redirect or a failover to another node.
	alternates []string
	redirected bool
	// ticket is the admission ticket of the latest redirect (a signed-in
	// account), handed to the node it names; home is the origin the
	// session started at, where a join whose ticket was refused goes
	// again once (ticketRetried) for a fresh one.
	ticket        string
	home          string
	ticketRetried bool
	peers         *peers
	outbox        []*signal.Message // sent after a resume
	timers        map[string]*loopTimer
	publishSeq    int
	playing       map[string]chan struct{} // by source: closed when its player stopped
	iceServers    []signal.ICEServer       // of the latest welcome or ice-servers
	relayOnly     bool                     // the server asks for relayed media only
}

// run is the session loop: every change of the session's state happens
// here, one task at a time, in the order the tasks were posted.
func (s *Session) run(eventsDone <-chan struct{}) {
	s.timers = map[string]*loopTimer{}
	s.playing = map[string]chan struct{}{}
	s.home = s.meeting.Origin
	s.connect()
	for !s.ended {
		fs, _ := s.tasks.take()
		if len(fs) == 0 {
			<-s.tasks.wake
			continue
		}
		for _, f := range fs {
			if s.ended {
				break
			}
			f()
		}
		s.tasks.recycle(fs)
	}
	s.tasks.close()
	s.wg.Wait()
	s.emit(Event{Kind: Closed, Err: s.Err()})
	s.events.close()
	<-eventsDone
	s.http.CloseIdleConnections()
	close(s.done)
}

// end stops the session with err (nil: left normally). Run finishes the
// job once the current task returns.
func (s *Session) end(err error) {
	if s.ended {
		return
	}
	s.ended = true
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.cancel()
	for _, t := range s.timers {
		t.stop()
	}
	if s.ws != nil {
		s.ws.close()
		s.ws = nil
	}
	s.teardownPeers()
	if !s.joined {
		if err == nil {
			err = errors.New("left before joining")
		}
		s.ready <- err
	}
	if err != nil {
		s.log.Info("session ended", "err", err)
	}
}

// loopTimer is a timer of the loop; its identity tells a stale firing.
type loopTimer struct{ stop func() bool }

// timer runs f on the loop after d (on Options.Clock), replacing the timer
// of the same name.
func (s *Session) timer(name string, d time.Duration, f func()) {
	s.stopTimer(name)
	t := new(loopTimer)
	t.stop = s.clock.AfterFunc(d, func() {
		s.post(func() {
			if s.timers[name] == t {
				delete(s.timers, name)
				f()
			}
		})
	})
	s.timers[name] = t
}

func (s *Session) stopTimer(name string) {
	if t := s.timers[name]; t != nil {
		t.stop()
		delete(s.timers, name)
	}
}

// connect opens a signaling connection in the background and joins.
func (s *Session) connect() {
	s.wg.Add(1)
	meeting := s.meeting
	go func() {
		defer s.wg.Done()
		c, err := dialWS(s.ctx, meeting, s.http)
		s.post(func() {
			if s.ended {
				if c != nil {
					c.CloseNow()
				}
				return
			}
			if err != nil {
				if !s.joined {
					s.end(tlsError(err))
					return
				}
				s.log.Debug("reconnection failed", "err", err)
				if len(s.alternates) > 0 {
					// The node does not answer: the next one of the
					// cluster, at once; the failed one goes last.
					next := s.alternates[0]
					s.alternates = append(s.alternates[1:], s.meeting.Origin)
					s.moveTo(next)
					s.timer("reconnect", failoverDelay, s.connect)
					return
				}
				s.reconnectLater()
				return
			}
			w := newWSConn(c)
			s.ws = w
			w.start(&s.wg,
				func(m *signal.Message) { s.post(func() { s.onMessage(w, m) }) },
				func(err error) { s.post(func() { s.onClosed(w, err) }) })
			s.sendOn(w, &signal.Message{Type: signal.TypeJoin, Room: s.meeting.Room, Name: s.opts.Name, Resume: s.resume, PIN: s.opts.PIN,
				Redirected: s.redirected, Ticket: s.ticket})
		})
	}()
}

func (s *Session) reconnectLater() {
	d := reconnectDelay(s.attempt)
	s.attempt++
	s.timer("reconnect", d, s.connect)
}

// onClosed handles the end of a signaling connection.
func (s *Session) onClosed(w *wsConn, err error) {
	if w != s.ws {
		return
	}
	s.ws = nil
	switch {
	case s.leaving:
		s.end(nil)
	case !s.joined:
		s.end(fmt.Errorf("join %s: the server closed the connection: %w", s.meeting.Room, err))
	default:
		s.log.Info("signaling connection lost; reconnecting", "err", err)
		if !s.outage {
			s.outage = true
			s.emit(Event{Kind: Reconnecting})
		}
		s.reconnectLater()
	}
}

// send sends m on the current connection. While disconnected, messages
// that still make sense after a resume wait in the outbox; a publish is
// kept as the pending publish and sent again anyway.
func (s *Session) send(m *signal.Message) error {
	if s.ws != nil {
		return s.sendOn(s.ws, m)
	}
	switch m.Type {
	case signal.TypeCandidate, signal.TypeRestartICE, signal.TypeAnnounce, signal.TypeKey, signal.TypeVerify:
		s.outbox = append(s.outbox, m)
	}
	return nil
}

func (s *Session) sendOn(w *wsConn, m *signal.Message) error {
	err := w.send(m)
	if err != nil {
		// Usually a connection that just closed; what matters is resent
		// after the reconnection.
		s.log.Debug("signaling send failed", "type", m.Type, "err", err)
	}
	return err
}

func (s *Session) onMessage(w *wsConn, m *signal.Message) {
	if w != s.ws || s.ended {
		return
	}
	switch m.Type {
	case signal.TypeWelcome:
		s.onWelcome(m)
	case signal.TypePublishAnswer:
		s.onPublishAnswer(m)
	case signal.TypeSubscribeOffer:
		s.onSubscribeOffer(m)
	case signal.TypeCandidate:
		s.onCandidate(m)
	case signal.TypeParticipantJoined, signal.TypeParticipantUpdated:
		if m.Participant != nil {
			s.onParticipant(*m.Participant, m.Type == signal.TypeParticipantJoined)
		}
	case signal.TypeParticipantLeft:
		if m.Participant != nil {
			s.onParticipantLeft(*m.Participant)
		}
	case signal.TypeAnnounce, signal.TypeKey, signal.TypeVerify:
		s.onOpaque(m)
	case signal.TypeError:
		s.onError(m)
	case signal.TypeBye:
		if m.Reason == "left" || s.leaving {
			s.end(nil)
		} else {
			s.end(&EndedError{Reason: m.Reason})
		}
	case signal.TypeWaiting:
		s.log.Info("waiting to be admitted", "wait", m.Wait)
		s.emit(Event{Kind: Waiting, Wait: m.Wait})
	case signal.TypeMuted:
		s.log.Info("muted by a host", "by", m.By)
		s.emit(Event{Kind: Muted, By: m.By})
	case signal.TypeLayers:
		s.onLayers(m)
	case signal.TypeNotice:
		s.log.Info("server notice", "code", m.Code, "message", m.Text)
	case signal.TypeRedirect:
		s.onRedirect(m)
	case signal.TypeICEServers:
		s.onICEServers(m)
	case signal.TypePong:
	default:
		// Extensions this client does not know (docs/protocol.md).
	}
}

func (s *Session) onWelcome(m *signal.Message) {
	if m.Self == nil {
		s.log.Warn("welcome without self")
		return
	}
	resumed := m.Resumed && s.peers != nil && m.Self.ID == s.Self().ID
	s.attempt = 0
	s.resume = m.Resume
	s.redirected = false
	s.ticket = ""
	s.alternates = s.alternates[:0]
	for _, n := range m.Nodes {
		if u, err := url.Parse(n); err == nil && u.Scheme == "https" && "https://"+u.Host != s.meeting.Origin {
			s.alternates = append(s.alternates, n)
		}
	}
	s.stopTimer("reconnect")

	s.mu.Lock()
	s.self = *m.Self
	if m.RoomInfo != nil {
		s.room = *m.RoomInfo
	}
	old := s.participants
	s.participants = make(map[string]signal.Participant, len(m.Participants))
	for _, p := range m.Participants {
		s.participants[p.ID] = p
		s.names[p.ID] = p.Name
	}
	now := s.participants
	s.mu.Unlock()
	others := make([]signal.Participant, 0, len(m.Participants))
	others = append(others, m.Participants...)
	if !s.joined {
		s.emit(Event{Kind: Joined, Participant: *m.Self, Meeting: m.Meeting, Others: others})
	}
	// Report who is there (after a reconnection: what changed), as events.
	for id, p := range old {
		if _, ok := now[id]; !ok {
			s.emit(Event{Kind: ParticipantLeft, Participant: p})
		}
	}
	for id, p := range now {
		if q, ok := old[id]; !ok {
			s.emit(Event{Kind: ParticipantJoined, Participant: p})
		} else if q != p {
			s.emit(Event{Kind: ParticipantUpdated, Participant: p})
		}
	}

	s.relayOnly = m.ICEPolicy == "relay"
	if resumed {
		s.onICEServers(m) // fresh credentials
		queued := s.outbox
		s.outbox = nil
		for _, q := range queued {
			s.send(q)
		}
		if s.peers.pendingPublish != nil {
			s.send(s.peers.pendingPublish)
		}
	} else {
		s.outbox = nil
		s.teardownPeers()
		s.iceServers = m.ICEServers
		if err := s.setupPeers(m.ICEServers); err != nil {
			s.end(err)
			return
		}
	}
	s.send(&signal.Message{Type: signal.TypeState, State: &signal.MediaState{
		Audio: s.opts.Microphone != nil, Video: s.opts.Camera != nil || len(s.opts.CameraLayers) > 0}})

	if !s.joined {
		s.joined = true
		s.log.Info("joined", "participant", m.Self.ID)
		s.ready <- nil
	} else {
		s.log.Info("rejoined", "participant", m.Self.ID, "resumed", resumed)
		s.outage = false
		s.emit(Event{Kind: Rejoined, Resumed: resumed, Participant: *m.Self, Meeting: m.Meeting, Others: others})
	}
}

func (s *Session) onParticipant(p signal.Participant, joined bool) {
	s.mu.Lock()
	if p.ID == s.self.ID {
		s.mu.Unlock()
		return
	}
	_, known := s.participants[p.ID]
	s.participants[p.ID] = p
	s.names[p.ID] = p.Name
	s.mu.Unlock()
	kind := ParticipantUpdated
	if joined || !known {
		kind = ParticipantJoined
	}
	s.emit(Event{Kind: kind, Participant: p})
}

func (s *Session) onParticipantLeft(p signal.Participant) {
	s.mu.Lock()
	_, known := s.participants[p.ID]
	delete(s.participants, p.ID)
	s.mu.Unlock()
	if known {
		s.emit(Event{Kind: ParticipantLeft, Participant: p})
	}
}

func (s *Session) onOpaque(m *signal.Message) {
	hook := s.opts.Hooks.OnAnnounce
	switch m.Type {
	case signal.TypeKey:
		hook = s.opts.Hooks.OnKey
	case signal.TypeVerify:
		hook = s.opts.Hooks.OnVerify
	}
	if hook == nil {
		return
	}
	payload, err := decodePayload(m.Payload)
	if err != nil {
		s.log.Warn("ignoring an opaque message", "type", m.Type, "from", m.From, "err", err)
		return
	}
	from := m.From
	s.events.post(func() { hook(from, payload) })
}

func (s *Session) onError(m *signal.Message) {
	if m.Fatal && m.Code == signal.CodeTicketRefused && s.ticket != "" && !s.ticketRetried && s.moveTo(s.home) {
		// The node refused the ticket (it expired on the way, the node
		// restarted): back to the node the session started at, once,
		// which sends it on with a fresh one.
		s.log.Info("admission ticket refused; joining again where the session started", "message", m.Text)
		s.ticketRetried = true
		s.ticket = ""
		s.redirected = false
		if w := s.ws; w != nil {
			s.ws = nil
			w.close()
		}
		s.stopTimer("reconnect")
		s.connect()
		return
	}
	if m.Fatal {
		s.end(&ServerError{Code: m.Code, Message: m.Text})
		return
	}
	if p := s.peers; p != nil && p.pendingPublish != nil && (m.ID == p.pendingPublish.ID || m.ID == "" && m.RefType == signal.TypePublish) {
		s.onPublishFailed(fmt.Errorf("%s: %s", m.Code, m.Text))
		return
	}
	s.log.Warn("server error", "code", m.Code, "ref", m.RefType, "message", m.Text)
}

// leave starts a normal leave: leave is sent, bye (or the connection's
// end, or a second) finishes it.
func (s *Session) leave() {
	if s.ended || s.leaving {
		return
	}
	s.leaving = true
	if s.ws == nil {
		s.end(nil)
		return
	}
	s.send(&signal.Message{Type: signal.TypeLeave})
	s.timer("leave", leaveWait, func() { s.end(nil) })
}

// rejoin gives up the current participant and joins afresh, after a peer
// connection failed to recover.
func (s *Session) rejoin() {
	if s.ended {
		return
	}
	s.log.Warn("media connection did not recover; joining again")
	if w := s.ws; w != nil {
		s.sendOn(w, &signal.Message{Type: signal.TypeLeave})
		w.closeAfterFlush()
		s.ws = nil
	}
	s.teardownPeers()
	s.resume = ""
	if !s.outage {
		s.outage = true
		s.emit(Event{Kind: Reconnecting})
	}
	s.stopTimer("reconnect")
	s.connect()
}

// failoverDelay is how long a session waits before trying another node of
// the cluster (docs/protocol.md, "Nodes"), as the browser does.
const failoverDelay = 250 * time.Millisecond

// moveTo points the session at the node with base URL base (https://host:port).
func (s *Session) moveTo(base string) bool {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return false
	}
	origin := "https://" + u.Host
	s.meeting.WebSocket = "wss://" + u.Host + "/ws"
	s.meeting.Origin = origin
	s.meeting.Base = origin
	s.meeting.Host = u.Hostname()
	s.redirected = true
	return true
}

// onRedirect joins the node the server names, at once, keeping the
// resume token: the role and the meeting are kept there.
func (s *Session) onRedirect(m *signal.Message) {
	if !s.moveTo(m.URL) {
		s.log.Warn("ignoring a redirect to a URL that is not https", "url", m.URL)
		return
	}
	s.log.Info("redirected to another node", "url", m.URL, "reason", m.Reason)
	s.ticket = m.Ticket
	if w := s.ws; w != nil {
		s.ws = nil
		w.close()
	}
	s.attempt = 0
	s.stopTimer("reconnect")
	s.connect()
}
