package meeting

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"conclave/internal/conn"
	"conclave/internal/signal"
)

// fakeFed connects the managers of test worlds as internal/cascade
// does, delivering in order, one goroutine per destination.
type fakeFed struct {
	t     *testing.T
	self  string
	net   *fakeNet
	mu    sync.Mutex
	relay map[string]*fakeRelay // by node+alias
}

// fakeNet holds the nodes and their queues.
type fakeNet struct {
	mu      sync.Mutex
	nodes   map[string]*Manager
	queues  map[string]chan func()
	pending sync.WaitGroup
	down    map[string]bool
}

func newFakeNet() *fakeNet {
	return &fakeNet{nodes: map[string]*Manager{}, queues: map[string]chan func(){}, down: map[string]bool{}}
}

// add makes w node name of the network.
func (n *fakeNet) add(t *testing.T, name string, w *world) {
	q := make(chan func(), 1024)
	n.mu.Lock()
	n.nodes[name] = w.m
	n.queues[name] = q
	n.mu.Unlock()
	go func() {
		for f := range q {
			f()
			n.pending.Done()
		}
	}()
	w.m.SetFederation(&fakeFed{t: t, self: name, net: n, relay: map[string]*fakeRelay{}})
}

// post runs f on node's queue, unless the link between from and node is
// down.
func (n *fakeNet) post(from, node string, f func()) {
	n.mu.Lock()
	q := n.queues[node]
	cut := n.down[from] || n.down[node]
	if q != nil && !cut {
		n.pending.Add(1)
	}
	n.mu.Unlock()
	if q != nil && !cut {
		q <- f
	}
}

// settle waits until nothing is in flight.
func (n *fakeNet) settle() {
	for range 3 {
		n.pending.Wait()
		time.Sleep(time.Millisecond) // let the receivers' own sends queue
	}
	n.pending.Wait()
}

// kill cuts node off and tells the others it is down.
func (n *fakeNet) kill(node string) {
	n.settle()
	n.mu.Lock()
	n.down[node] = true
	var others []*Manager
	for name, m := range n.nodes {
		if name != node {
			others = append(others, m)
		}
	}
	n.mu.Unlock()
	for _, m := range others {
		m.NodeDown(node)
	}
}

func (f *fakeFed) Self() string { return f.self }

func (f *fakeFed) Broadcast(alias string, ev Event) {
	f.net.mu.Lock()
	var to []string
	for name := range f.net.nodes {
		if name != f.self {
			to = append(to, name)
		}
	}
	f.net.mu.Unlock()
	for _, node := range to {
		f.Send(node, alias, ev)
	}
}

func (f *fakeFed) Send(node, alias string, ev Event) {
	f.net.mu.Lock()
	m := f.net.nodes[node]
	f.net.mu.Unlock()
	from := f.self
	f.net.post(from, node, func() { m.Deliver(from, alias, ev) })
}

func (f *fakeFed) Relay(node, alias string) (conn.Subscriber, error) {
	f.net.mu.Lock()
	m := f.net.nodes[node]
	f.net.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("no node %s", node)
	}
	r := &fakeRelay{fed: f, node: node, alias: alias, to: m, tracks: map[conn.UpTrack]bool{}}
	f.mu.Lock()
	f.relay[node+"/"+alias] = r
	f.mu.Unlock()
	return r, nil
}

// relayed reports whether t is relayed to node.
func (f *fakeFed) relayed(node, alias string, t conn.UpTrack) bool {
	f.mu.Lock()
	r := f.relay[node+"/"+alias]
	f.mu.Unlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tracks[t]
}

// fakeRelay hands the tracks added to it to the other node's manager, as
// the relay of internal/cascade does (the same track object stands for
// the relayed one).
type fakeRelay struct {
	fakeSubscriber
	fed         *fakeFed
	node, alias string
	to          *Manager
	mu          sync.Mutex
	tracks      map[conn.UpTrack]bool
}

func (r *fakeRelay) AddTrack(t conn.UpTrack, _ conn.TrackOptions) error {
	r.mu.Lock()
	known := r.tracks[t]
	r.tracks[t] = true
	r.mu.Unlock()
	if !known {
		from := r.fed.self
		r.fed.net.post(from, r.node, func() { r.to.RemoteTrack(from, r.alias, t.Participant(), t) })
	}
	return nil
}

func (r *fakeRelay) RemoveTrack(t conn.UpTrack) {
	r.mu.Lock()
	known := r.tracks[t]
	delete(r.tracks, t)
	r.mu.Unlock()
	if known {
		from := r.fed.self
		r.fed.net.post(from, r.node, func() { r.to.RemoteTrackEnded(from, r.alias, t.Participant(), t) })
	}
}

func (r *fakeRelay) Close() error {
	r.mu.Lock()
	var ts []conn.UpTrack
	for t := range r.tracks {
		ts = append(ts, t)
	}
	r.mu.Unlock()
	for _, t := range ts {
		r.RemoveTrack(t)
	}
	return nil
}

// TestMeetingAcrossNodesRoom: the members of one meeting on two nodes see
// each other, exchange E2EE messages and media (relayed once per node),
// and the hosts' controls apply across: mute, lock and the lobby, roles.
func TestMeetingAcrossNodesRoom(t *testing.T) {
	net := newFakeNet()
	a, b := newWorld(t, roleGate{}), newWorld(t, roleGate{})
	net.add(t, "a", a)
	net.add(t, "b", b)

	ann, w := a.join("board", "Ann", hostPIN)
	must(t, w.Type == signal.TypeWelcome, "Ann: %+v", w)
	annID := w.Self.ID
	net.settle()
	bob, w := b.join("board", "Bob", guestPIN)
	must(t, w.Type == signal.TypeWelcome && len(w.Participants) == 1 && w.Participants[0].Name == "Ann",
		"Bob's welcome on node b lists %s", ids(w.Participants))
	bobID := w.Self.ID
	net.settle()
	m := ann.next(signal.TypeRoomState, signal.TypeSpeaker)
	must(t, m.Type == signal.TypeParticipantJoined && m.Participant.Name == "Bob", "Ann got %+v", m)

	// Media: Ann's camera reaches Bob through one relay to node b.
	cam := a.media.publisher(t, annID).start("0", conn.Camera)
	net.settle()
	bobSub := b.media.sub(0)
	must(t, bobSub.forwarding(cam), "Ann's camera does not reach Bob on the other node")
	must(t, a.m.federation().(*fakeFed).relayed("b", "board", cam), "Ann's camera is not relayed to node b")

	// E2EE messages cross: chat to everyone, a key to one.
	bob.send(`{"v":1,"type":"chat","payload":"aGVsbG8="}`)
	bob.send(fmt.Sprintf(`{"v":1,"type":"key","to":%q,"payload":"a2V5"}`, annID))
	bob.sync()
	net.settle()
	m = ann.next(signal.TypeRoomState, signal.TypeSpeaker, signal.TypeParticipantUpdated)
	must(t, m.Type == signal.TypeChat && m.From == bobID && m.Payload == "aGVsbG8=", "Ann got %+v", m)
	m = ann.next(signal.TypeRoomState, signal.TypeSpeaker, signal.TypeParticipantUpdated)
	must(t, m.Type == signal.TypeKey && m.From == bobID && m.Payload == "a2V5", "Ann got %+v", m)

	// Ann mutes Bob: enforced on Bob's node.
	bobMic := b.media.publisher(t, bobID).start("1", conn.Microphone)
	net.settle()
	ann.send(fmt.Sprintf(`{"v":1,"type":"mute","target":%q}`, bobID))
	ann.sync()
	net.settle()
	must(t, bobMic.isMuted(), "Bob's microphone is not muted on node b")
	m = bob.next(signal.TypeRoomState, signal.TypeSpeaker, signal.TypeParticipantUpdated, signal.TypeChat, signal.TypeKey)
	must(t, m.Type == signal.TypeMuted && m.By == annID, "Bob got %+v", m)

	// Ann locks the room: a newcomer on node b knocks, Ann admits it.
	ann.send(`{"v":1,"type":"lock","locked":true}`)
	ann.sync()
	net.settle()
	cat, w := b.join("board", "Cat", "")
	must(t, w.Type == signal.TypeWaiting && w.Wait == signal.WaitLobby, "Cat on node b: %+v", w)
	net.settle()
	var catID string
	for {
		m = ann.next()
		if m.Type == signal.TypeKnock {
			catID = m.Participant.ID
			break
		}
	}
	ann.send(fmt.Sprintf(`{"v":1,"type":"admit","target":%q}`, catID))
	ann.sync()
	net.settle()
	m = cat.next(signal.TypeRoomState)
	must(t, m.Type == signal.TypeWelcome && m.Self.ID == catID, "Cat got %+v", m)

	// Ann makes Bob a host: Bob's node applies it, everyone sees it.
	ann.send(fmt.Sprintf(`{"v":1,"type":"set-role","target":%q,"role":"host"}`, bobID))
	ann.sync()
	net.settle()
	for {
		m = ann.next()
		if m.Type == signal.TypeParticipantUpdated && m.Participant.ID == bobID {
			must(t, m.Participant.Role == signal.RoleHost, "Bob's role seen on node a: %q", m.Participant.Role)
			break
		}
	}
}

// TestNodeDownTakeOver: when a node dies, its participants leave the
// others' view at once; the state of the meeting stays (lock), and a
// participant that comes back through another node with its resume
// token gets its role back.
func TestNodeDownTakeOver(t *testing.T) {
	net := newFakeNet()
	a, b := newWorld(t, roleGate{}), newWorld(t, roleGate{})
	net.add(t, "a", a)
	net.add(t, "b", b)
	_, w := a.join("board", "Ann", hostPIN)
	annID, annResume := w.Self.ID, w.Resume
	net.settle()
	bob, _ := b.join("board", "Bob", guestPIN)
	net.settle()
	a.m.Deliver("x", "none", Event{}) // unknown room, unknown node: ignored
	bob.quiet(signal.TypeParticipantJoined, signal.TypeRoomState, signal.TypeSpeaker)

	// Ann locks the room, then her node dies.
	lockVia(t, a, "board")
	net.settle()
	net.kill("a")
	m := bob.next(signal.TypeRoomState, signal.TypeSpeaker, signal.TypeNotice)
	must(t, m.Type == signal.TypeParticipantLeft && m.Participant.ID == annID, "Bob got %+v", m)

	// Ann's client comes back through node b with its resume token, and
	// no PIN: a host again, not sent to the lobby of the locked room.
	c := &client{t: t, name: "Ann again", c: newPipeConn(), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		b.m.Serve(t.Context(), c.c, Client{})
	}()
	c.send(fmt.Sprintf(`{"v":1,"type":"join","room":"board","name":"Ann","resume":%q}`, annResume))
	m = c.next()
	must(t, m.Type == signal.TypeWelcome && m.Self.Role == signal.RoleHost && !m.Resumed,
		"Ann through node b: %+v", m)
	must(t, m.RoomState != nil && m.RoomState.Locked, "the lock was lost with node a: %+v", m.RoomState)
	// A stolen token does not work twice.
	d := &client{t: t, name: "Thief", c: newPipeConn(), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		b.m.Serve(t.Context(), d.c, Client{})
	}()
	d.send(fmt.Sprintf(`{"v":1,"type":"join","room":"board","name":"Ann","resume":%q}`, annResume))
	m = d.next()
	must(t, m.Type == signal.TypeWaiting || m.Self != nil && m.Self.Role != signal.RoleHost,
		"the resume token admitted a host twice: %+v", m)
}

// lockVia locks room through its first host on world w.
func lockVia(t *testing.T, w *world, alias string) {
	t.Helper()
	w.m.mu.Lock()
	r := w.m.active[alias]
	w.m.mu.Unlock()
	r.mu.Lock()
	var host *Participant
	for _, p := range r.order {
		if p.getRole() == RoleHost {
			host = p
		}
	}
	r.mu.Unlock()
	locked := true
	if err := host.hostCommand(&signal.Message{Type: signal.TypeLock, Locked: &locked}); err != nil {
		t.Fatal(err)
	}
}
