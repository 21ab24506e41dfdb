package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"conclave/internal/auth"
	"conclave/internal/client"
	"conclave/internal/config"
	"conclave/internal/conn"
	"conclave/internal/nodeca"
	"conclave/internal/perm"
	"conclave/internal/secrets"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

// clusterMgmt starts a management node with its cluster listener and
// embedded bus on fixed loopback ports (so that it can be started again
// on the same ones) in dir; change adjusts its configuration.
func clusterMgmt(t *testing.T, dir string, busPort int, change ...func(*config.Config)) *server.Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.MediaUDP = "127.0.0.1:0"
	cfg.MediaTCP = ""
	cfg.Hosts = []string{"127.0.0.1"}
	cfg.ClusterListen = "127.0.0.1:0"
	cfg.Cluster.BusListen = "127.0.0.1:" + strconv.Itoa(busPort)
	cfg.Cluster.RelayListen = "127.0.0.1:0"
	cfg.TURNUDP, cfg.TURNTCP = "127.0.0.1:0", "127.0.0.1:0" // not :3478, which every node of the test would want
	for _, f := range change {
		f(&cfg)
	}
	srv, err := server.Open(cfg, slog.New(slog.DiscardHandler), server.Options{Binary: "-"})
	if err != nil {
		t.Fatalf("open management node: %v", err)
	}
	srv.Start()
	return srv
}

// enrolNode makes a conference node called name known to mgmt and enrols
// it into a fresh data directory, which it returns.
func enrolNode(t *testing.T, mgmt *server.Server, name string) string {
	t.Helper()
	return enrolRole(t, mgmt, name, nodeca.RoleConference)
}

// enrolRole is enrolNode with a role.
func enrolRole(t *testing.T, mgmt *server.Server, name, role string) string {
	t.Helper()
	return enrolLabelled(t, mgmt, name, role, "")
}

// enrolLabelled is enrolNode with a role and labels ("paris,lyon").
func enrolLabelled(t *testing.T, mgmt *server.Server, name, role, labels string) string {
	t.Helper()
	ctx := context.Background()
	tok, err := mgmt.ClusterCA().NewToken(ctx, name, role, labels, "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := nodeca.Enrol(ctx, filepath.Join(dir, server.NodeDir), mgmt.ClusterAddr().String(), tok,
		mgmt.ClusterCA().Fingerprint(), []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startNode(t *testing.T, dir, busURL string) *server.Node {
	t.Helper()
	return startNodeWith(t, dir, busURL, nodeOpts{})
}

// nodeOpts are a test node's options.
type nodeOpts struct {
	server.NodeOptions
	NoRelayListener bool   // an edge node that only dials
	SecretsKey      string // the master key (hexadecimal), if any
	Debug           bool   // a debug listener (metrics) on loopback
}

func startNodeWith(t *testing.T, dir, busURL string, opts nodeOpts) *server.Node {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.MediaUDP = "127.0.0.1:0"
	cfg.MediaTCP = ""
	cfg.Hosts = []string{"127.0.0.1"}
	cfg.Cluster.NATS = busURL
	cfg.Cluster.RelayListen = "127.0.0.1:0"
	cfg.TURNUDP, cfg.TURNTCP = "127.0.0.1:0", "127.0.0.1:0"
	if opts.NoRelayListener {
		cfg.Cluster.RelayListen = ""
	}
	if opts.Debug {
		cfg.DebugListen = "127.0.0.1:0"
	}
	cfg.Secrets.Key = opts.SecretsKey
	n, err := server.OpenNode(cfg, testlog.Logger(t, slog.LevelInfo), opts.NodeOptions)
	if err != nil {
		t.Fatalf("open conference node: %v", err)
	}
	n.Start()
	t.Cleanup(func() { n.Close() })
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func dialURL(t *testing.T, base string) *wsClient {
	t.Helper()
	return dialURLFrom(t, base, "127.0.0.1")
}

// dialURLFrom connects to the node at base from a chosen loopback
// address (another person's machine).
func dialURLFrom(t *testing.T, base, source string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

// joinPIN joins room with pin and returns the first answer.
func (w *wsClient) joinPIN(room, name, pin string) signal.Message {
	w.t.Helper()
	w.sendRaw(`{"v":1,"type":"join","room":"` + room + `","name":"` + name + `","pin":"` + pin + `"}`)
	return w.next(signal.TypeRoomState, signal.TypeNotice)
}

// TestConferenceNodeWithoutManagement: a conference node gets the rooms
// over the bus, admits with the right PIN and refuses a wrong one; with
// the management node stopped it goes on doing both from the copy on its
// disk, and the audit entries of the outage reach the management node's
// log when it is back.
func TestConferenceNodeWithoutManagement(t *testing.T) {
	ctx := context.Background()
	mgmtDir := t.TempDir()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, mgmtDir, busPort)
	defer func() { mgmt.Close() }()
	hostHash, err := auth.HashPIN("246810")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN,
		HostPINHash: hostHash}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()

	node := startNode(t, enrolNode(t, mgmt, "paris-1"), "tls://127.0.0.1:"+strconv.Itoa(busPort))
	wait.For(t, "the node to receive the configuration", 20*time.Second, func() bool {
		have, current := node.ConfigReady()
		return have && current
	})
	wait.For(t, "the management node to hear the node's status", 10*time.Second, func() bool {
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "paris-1" && n.Up && n.URL == node.URL() {
				return true
			}
		}
		return false
	})

	// The transparency log is the management node's: the node passes its
	// requests on.
	get := func(base string) (int, string) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := hc.Get(base + "/api/e2ee/log/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, viaNode := get(node.URL())
	_, direct := get(mgmt.URL())
	if st != http.StatusOK || viaNode != direct {
		t.Fatalf("log checkpoint through the node: %d %q, from management %q", st, viaNode, direct)
	}

	host := dialURL(t, node.URL())
	if m := host.joinPIN("board", "Host", "246810"); m.Type != signal.TypeWelcome {
		t.Fatalf("host PIN on the node: %+v", m)
	}
	if m := dialURL(t, node.URL()).joinPIN("board", "Mallory", "111111"); m.Type != signal.TypeError || m.Code != signal.CodeRoomUnavailable {
		t.Fatalf("wrong PIN on the node: %+v", m)
	}
	// The node's refusal reaches the management node's audit log.
	fromNode := func(source string) bool {
		recs, err := mgmt.AuditEvents(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Details["node"] == "paris-1" && r.Details["room"] == "board" && r.Source == source {
				return true
			}
		}
		return false
	}
	wait.For(t, "the node's audit entry at the management node", 20*time.Second, func() bool { return fromNode("127.0.0.1") })

	wait.For(t, "the node's copy of the log", 10*time.Second, func() bool { _, ready, _ := node.LogCopy(); return ready })
	// The management node goes away.
	if err := mgmt.Close(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the node to notice", 10*time.Second, func() bool { _, current := node.ConfigReady(); return !current })
	second := dialURL(t, node.URL())
	if m := second.joinPIN("board", "Second host", "246810"); m.Type != signal.TypeWelcome {
		t.Fatalf("right PIN without management: %+v", m)
	}
	if m := dialURLFrom(t, node.URL(), "127.0.0.3").joinPIN("board", "Mallory", "999999"); m.Type != signal.TypeError || m.Code != signal.CodeRoomUnavailable {
		t.Fatalf("wrong PIN without management: %+v", m)
	}
	// The meeting goes on: the first host sees the second arrive.
	if m := host.next(signal.TypeRoomState, signal.TypeNotice, signal.TypeAnnounce); m.Type != signal.TypeParticipantJoined || m.Participant.Name != "Second host" {
		t.Fatalf("first host got %+v", m)
	}
	if node.Spooled() == 0 {
		t.Fatal("the refusal during the outage is not spooled")
	}
	// The node answers the log from its verified copy (TestNodeLogCopy).
	if st, body := get(node.URL()); st != http.StatusOK || body != direct {
		t.Errorf("log checkpoint from the node without management: %d %s; before: %s", st, body, direct)
	}

	// The management node is back: the outage's refusal arrives in its
	// audit log, from the node.
	mgmt = clusterMgmt(t, mgmtDir, busPort)
	wait.For(t, "the spooled entries to be delivered", 20*time.Second, func() bool { return node.Spooled() == 0 })
	wait.For(t, "the outage's entry in the management node's audit log", 20*time.Second, func() bool { return fromNode("127.0.0.3") })
}

// relayCount counts, per relayed track, the RTP packets a node received
// from the others.
type relayCount struct {
	mu     sync.Mutex
	tracks map[conn.RelayedTrack]int
}

func (c *relayCount) tap(_ string, t conn.RelayedTrack, _ []byte) {
	c.mu.Lock()
	if c.tracks == nil {
		c.tracks = map[conn.RelayedTrack]int{}
	}
	c.tracks[t]++
	c.mu.Unlock()
}

// of returns how many relayed tracks of participant's source arrived.
func (c *relayCount) of(participant string, source conn.Source) (tracks, packets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, n := range c.tracks {
		if t.Participant() == participant && t.Source() == source {
			tracks++
			packets += n
		}
	}
	return tracks, packets
}

// TestMeetingAcrossNodes: participants of one meeting on two conference
// nodes receive each other's media, relayed once per node: two
// subscribers on node B of a publisher on node A make one relayed track.
// Host controls cross too: a host on A locks the room and mutes a
// participant on B; the lock holds for a newcomer on B.
func TestMeetingAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	defer mgmt.Close()
	hostHash, _ := auth.HashPIN("246810")
	guestHash, _ := auth.HashPIN("135790")
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN,
		HostPINHash: hostHash, GuestPINHash: guestHash, AllowGuests: true, GuestsMayUnmute: true}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	var onB relayCount
	a := startNode(t, enrolNode(t, mgmt, "node-a"), bus)
	b := startNodeWith(t, enrolNode(t, mgmt, "node-b"), bus, nodeOpts{NodeOptions: server.NodeOptions{RelayTap: onB.tap}})
	for _, n := range []*server.Node{a, b} {
		wait.For(t, "the nodes to have the configuration", 20*time.Second, func() bool { have, cur := n.ConfigReady(); return have && cur })
	}
	wait.For(t, "the nodes to link", 20*time.Second, func() bool {
		return slices.Contains(a.Linked(), "node-b") && slices.Contains(b.Linked(), "node-a")
	})

	join := func(n *server.Node, name, pin string, publish bool) *client.Session {
		t.Helper()
		opts := client.Options{URL: n.URL() + "/r/board", Name: name, PIN: pin, InsecureSkipVerify: true}
		if publish {
			opts.Camera, opts.Microphone = client.NewTestVideo(), client.NewTestAudio()
		}
		s, err := client.Dial(ctx, opts)
		if err != nil {
			t.Fatalf("%s joins: %v", name, err)
		}
		t.Cleanup(func() { s.Leave() })
		return s
	}
	ann := join(a, "Ann", "246810", true) // host, on A
	bob := join(b, "Bob", "135790", true) // guest, on B
	cat := join(b, "Cat", "135790", false)

	frames := func(s *client.Session, from, source string) uint64 {
		for _, st := range s.Stats() {
			if st.Name == from && st.Source == source {
				return st.Frames
			}
		}
		return 0
	}
	for _, c := range []struct {
		who  *client.Session
		from string
	}{{bob, "Ann"}, {cat, "Ann"}, {ann, "Bob"}} {
		wait.For(t, c.from+"'s video to arrive across the nodes", 30*time.Second, func() bool {
			return frames(c.who, c.from, "camera") > 10 && frames(c.who, c.from, "microphone") > 10
		})
	}
	if n := len(ann.Participants()); n != 2 {
		t.Errorf("Ann sees %d others, want 2: %+v", n, ann.Participants())
	}
	tracks, packets := onB.of(ann.Self().ID, conn.Camera)
	if tracks != 1 || packets == 0 {
		t.Errorf("node B received Ann's camera as %d relayed tracks (%d packets); want one for its two subscribers", tracks, packets)
	}

	// Ann, on A, mutes Bob, on B, and locks the room.
	var bobID string
	for _, p := range ann.Participants() {
		if p.Name == "Bob" {
			bobID = p.ID
		}
	}
	if err := ann.Command(&signal.Message{Type: signal.TypeMute, Target: bobID}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "Cat to see Bob muted", 10*time.Second, func() bool {
		for _, p := range cat.Participants() {
			if p.Name == "Bob" && p.Muted {
				return true
			}
		}
		return false
	})
	locked := true
	if err := ann.Command(&signal.Message{Type: signal.TypeLock, Locked: &locked}); err != nil {
		t.Fatal(err)
	}
	// A guest arriving on B waits in the lobby; Ann, on A, sees the knock.
	lobby := make(chan client.Event, 4)
	go func() {
		s, err := client.Dial(ctx, client.Options{URL: b.URL() + "/r/board", Name: "Dan", PIN: "135790", InsecureSkipVerify: true,
			Hooks: client.Hooks{OnEvent: func(e client.Event) {
				if e.Kind == client.Waiting {
					lobby <- e
				}
			}}})
		if err == nil {
			t.Cleanup(func() { s.Leave() })
		}
	}()
	select {
	case e := <-lobby:
		if e.Wait != "lobby" {
			t.Fatalf("Dan waits for %q, want the lobby", e.Wait)
		}
	case <-ctx.Done():
		t.Fatal("Dan was not held in the lobby of the locked room")
	}
}

// TestDrainMovesParticipants: draining a node sends its participants to
// another node of the meeting, where they keep their role; new joins go
// there too; the node is then empty.
func TestDrainMovesParticipants(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	defer mgmt.Close()
	hostHash, _ := auth.HashPIN("246810")
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN,
		HostPINHash: hostHash, AllowGuests: true}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	aDir := enrolNode(t, mgmt, "node-a")
	a := startNode(t, aDir, bus)
	b := startNode(t, enrolNode(t, mgmt, "node-b"), bus)
	for _, n := range []*server.Node{a, b} {
		wait.For(t, "the nodes to have the configuration", 20*time.Second, func() bool { have, cur := n.ConfigReady(); return have && cur })
	}
	wait.For(t, "the nodes to link and hear each other", 20*time.Second, func() bool {
		return slices.Contains(a.Linked(), "node-b") && slices.Contains(b.Linked(), "node-a") && a.Knows("node-b") && b.Knows("node-a")
	})
	events := make(chan client.Event, 64)
	ann, err := client.Dial(ctx, client.Options{URL: a.URL() + "/r/board", Name: "Ann", PIN: "246810", InsecureSkipVerify: true,
		Camera: client.NewTestVideo(), Hooks: client.Hooks{OnEvent: func(e client.Event) { events <- e }}})
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Leave()
	bob, err := client.Dial(ctx, client.Options{URL: b.URL() + "/r/board", Name: "Bob", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Leave()
	first := ann.Self().ID

	rep, err := server.Control(aDir, server.ControlRequest{Command: "drain"})
	if err != nil || rep.Moved != 1 || !rep.Draining {
		t.Fatalf("drain: %+v %v", rep, err)
	}
	for {
		select {
		case e := <-events:
			if e.Kind == client.Rejoined {
				if e.Participant.ID == first || e.Participant.Role != signal.RoleHost {
					t.Fatalf("Ann after the drain: %+v", e.Participant)
				}
				goto moved
			}
		case <-ctx.Done():
			t.Fatal("Ann was not moved")
		}
	}
moved:
	wait.For(t, "node A to be empty", 10*time.Second, func() bool {
		rep, err := server.Control(aDir, server.ControlRequest{Command: "status"})
		return err == nil && rep.Participants == 0
	})
	wait.For(t, "Bob to see Ann, host, once", 10*time.Second, func() bool {
		ps := bob.Participants()
		return len(ps) == 1 && ps[0].Name == "Ann" && ps[0].Role == signal.RoleHost
	})
	wait.For(t, "Bob to receive Ann's video from node B itself", 20*time.Second, func() bool {
		for _, st := range bob.Stats() {
			if st.Name == "Ann" && st.Source == "camera" && st.Active && st.Frames > 10 {
				return true
			}
		}
		return false
	})
	// A newcomer on the draining node is sent to node B.
	cat, err := client.Dial(ctx, client.Options{URL: a.URL() + "/r/board", Name: "Cat", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Leave()
	if rep, _ := server.Control(aDir, server.ControlRequest{Command: "status"}); rep.Participants != 0 {
		t.Fatalf("the draining node took a newcomer: %+v", rep)
	}
}

// TestNodesAPI: the admin API lists the cluster's nodes with their
// status, makes enrolment tokens, drains a node over the bus, and removes
// a node (its certificates revoked); the answers match docs/openapi.yaml.
func TestNodesAPI(t *testing.T) {
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	defer mgmt.Close()
	srv := &testserver.Server{Server: mgmt}
	addAccount(t, srv, "root", perm.Administrator)
	node := startNode(t, enrolNode(t, mgmt, "node-a"), "tls://127.0.0.1:"+strconv.Itoa(busPort))
	wait.For(t, "the management node to hear node-a", 20*time.Second, func() bool {
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "node-a" && n.Up {
				return true
			}
		}
		return false
	})
	sc := newSchemaChecker(t, mgmt.URL())
	c := sc.client(t, mgmt.URL())
	c.login("root", testPassword)

	st, body, _ := c.do("GET", "/api/nodes", nil, false)
	if st != http.StatusOK {
		t.Fatalf("GET /api/nodes: %d %v", st, body)
	}
	byName := map[string]map[string]any{}
	for _, n := range body["nodes"].([]any) {
		m := n.(map[string]any)
		byName[m["name"].(string)] = m
	}
	a := byName["node-a"]
	if a == nil || byName["management"] == nil {
		t.Fatalf("nodes listed: %v", body)
	}
	status, _ := a["status"].(map[string]any)
	if status == nil || status["up"] != true || status["url"] != node.URL() || a["certExpiry"] == nil {
		t.Fatalf("node-a: %v", a)
	}

	if st, body, _ := c.do("POST", "/api/nodes", map[string]any{"name": "Bad Name"}, true); st != http.StatusBadRequest || errCode(body) != "invalid-node" {
		t.Errorf("bad name: %d %v", st, body)
	}
	st, body, _ = c.do("POST", "/api/nodes", map[string]any{"name": "node-b", "labels": "paris"}, true)
	if st != http.StatusCreated || !strings.Contains(body["command"].(string), "-token "+body["token"].(string)) {
		t.Fatalf("add node: %d %v", st, body)
	}

	if st, body, _ := c.do("POST", "/api/nodes/node-a/drain", map[string]any{"on": true}, true); st != http.StatusNoContent {
		t.Fatalf("drain: %d %v", st, body)
	}
	wait.For(t, "node-a to report draining", 10*time.Second, func() bool {
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "node-a" && n.Draining {
				return true
			}
		}
		return false
	})
	if st, body, _ := c.do("POST", "/api/nodes/nowhere/drain", map[string]any{"on": true}, true); st != http.StatusNotFound {
		t.Errorf("drain an unknown node: %d %v", st, body)
	}
	if st, body, _ := c.do("DELETE", "/api/nodes/node-a", nil, true); st != http.StatusNoContent {
		t.Fatalf("remove: %d %v", st, body)
	}
	st, body, _ = c.do("GET", "/api/nodes", nil, false)
	for _, n := range body["nodes"].([]any) {
		m := n.(map[string]any)
		if m["name"] == "node-a" && m["removedAt"] == nil {
			t.Errorf("node-a after removal: %v", m)
		}
	}
	sc.check()
	// Every change through the API has its audit record (the cluster's
	// part of TestAuditCompleteness).
	for _, want := range []struct{ action, target string }{
		{"node-enrolment-created", "node-b"}, {"node-drained", "node-a"}, {"node-removed", "node-a"},
	} {
		recs, _ := mgmt.AuditEvents(context.Background(), want.action)
		if !slices.ContainsFunc(recs, func(r store.AuditRecord) bool { return r.Actor == "root" && r.Target == want.target }) {
			t.Errorf("no audit record %s of %s by root: %+v", want.action, want.target, recs)
		}
	}
}

// TestEdgeNode: an edge node (in a DMZ) has no node-to-node listener: it
// dials the internal node itself, whose name sorts first, and the
// meeting spans them; the internal node does not send its participants
// to the edge, nor the edge its participants inside.
func TestEdgeNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	defer mgmt.Close()
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board"}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	inside := startNode(t, enrolNode(t, mgmt, "node-a"), bus)
	edge := startNodeWith(t, enrolRole(t, mgmt, "dmz-1", nodeca.RoleEdge), bus, nodeOpts{NoRelayListener: true})
	if edge.RelayAddr() != nil {
		t.Fatalf("the edge node listens on %v", edge.RelayAddr())
	}
	wait.For(t, "the edge to link to the internal node", 20*time.Second, func() bool {
		return slices.Contains(edge.Linked(), "node-a") && slices.Contains(inside.Linked(), "dmz-1")
	})
	for _, n := range []*server.Node{inside, edge} {
		wait.For(t, "the configuration", 20*time.Second, func() bool { have, cur := n.ConfigReady(); return have && cur })
	}
	outsider, err := client.Dial(ctx, client.Options{URL: edge.URL() + "/r/board", Name: "Out", InsecureSkipVerify: true,
		Camera: client.NewTestVideo()})
	if err != nil {
		t.Fatal(err)
	}
	defer outsider.Leave()
	insider, err := client.Dial(ctx, client.Options{URL: inside.URL() + "/r/board", Name: "In", InsecureSkipVerify: true,
		Camera: client.NewTestVideo()})
	if err != nil {
		t.Fatal(err)
	}
	defer insider.Leave()
	for _, c := range []struct {
		s    *client.Session
		from string
	}{{outsider, "In"}, {insider, "Out"}} {
		wait.For(t, c.from+"'s video across the edge", 30*time.Second, func() bool {
			for _, st := range c.s.Stats() {
				if st.Name == c.from && st.Source == "camera" && st.Frames > 10 {
					return true
				}
			}
			return false
		})
	}
	if rep := inside.Status(0); rep.Participants != 1 {
		t.Errorf("the internal node hosts %d participants, want its own one", rep.Participants)
	}
	if rep := edge.Status(0); rep.Participants != 1 || rep.Relay != "" {
		t.Errorf("the edge: %+v", rep)
	}
}

// A conference node's private key is sealed under the master key like the
// management node's keys: from enrolment when the key is set then, and at
// the first start with the key for a node enrolled without one. Without
// the key the node does not start.
func TestNodeKeySealed(t *testing.T) {
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	defer mgmt.Close()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	key := strings.Repeat("ab", 32)

	dir := enrolNode(t, mgmt, "node-a")
	if clear := clearKeys(dir); len(clear) == 0 {
		t.Fatal("a node enrolled without a master key has no key in the clear: the check below proves nothing")
	}
	n := startNodeWith(t, dir, bus, nodeOpts{SecretsKey: key})
	if clear := clearKeys(dir); len(clear) > 0 {
		t.Fatalf("private keys in the clear on a node started with a master key: %v", clear)
	}
	n.Close()
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen, cfg.MediaUDP, cfg.MediaTCP = dir, "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Cluster.NATS, cfg.Cluster.RelayListen = bus, "127.0.0.1:0"
	if _, err := server.OpenNode(cfg, slog.New(slog.DiscardHandler), server.NodeOptions{}); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("a node with a sealed key started without the master key: %v", err)
	}
	// Started again with its key, it has its identity back.
	if n = startNodeWith(t, dir, bus, nodeOpts{SecretsKey: key}); n.Name() != "node-a" {
		t.Fatalf("the node restarted as %q", n.Name())
	}

	raw, err := secrets.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	box, err := secrets.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mgmt.ClusterCA().NewToken(context.Background(), "node-b", nodeca.RoleConference, "", "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	if _, err := nodeca.EnrolSealed(context.Background(), filepath.Join(dirB, server.NodeDir), mgmt.ClusterAddr().String(), tok,
		mgmt.ClusterCA().Fingerprint(), []string{"127.0.0.1"}, box); err != nil {
		t.Fatal(err)
	}
	if clear := clearKeys(dirB); len(clear) > 0 {
		t.Fatalf("private keys in the clear after an enrolment with a master key: %v", clear)
	}
}
