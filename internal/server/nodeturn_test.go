package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/nodeca"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/testutil/wait"
	"conclave/internal/turn"
)

// TestTURNOnNodes: a conference node and an edge node each run the TURN
// relay for the participants that join them, as `conclave serve` does.
// Each welcome names the TURN ports of the participant's own node; a
// participant on the conference node that may use only TURN over TLS on
// its HTTPS port, and one on the edge that may use only TURN over UDP,
// exchange media across the two nodes, and each node's relay carried its
// own participant's media both ways. A credential of one node opens
// nothing on another.
func TestTURNOnNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	// The nodes stop first, while their bus is up (cleanups run last in,
	// first out).
	t.Cleanup(func() { mgmt.Close() })
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board"}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	inside := startNodeWith(t, enrolNode(t, mgmt, "node-a"), bus, nodeOpts{Debug: true})
	edge := startNodeWith(t, enrolRole(t, mgmt, "dmz-1", nodeca.RoleEdge), bus, nodeOpts{NoRelayListener: true})
	for _, n := range []*server.Node{inside, edge} {
		if n.TURN() == nil {
			t.Fatalf("%s runs no TURN server", n.Name())
		}
		wait.For(t, "the configuration", 20*time.Second, func() bool { have, cur := n.ConfigReady(); return have && cur })
	}
	wait.For(t, "the edge to link to the internal node", 20*time.Second, func() bool {
		return slices.Contains(edge.Linked(), "node-a") && slices.Contains(inside.Linked(), "dmz-1")
	})

	// The welcome names the node's own TURN ports, and its HTTPS port
	// for TURN over TLS.
	probe := dialURL(t, inside.URL())
	pw := probe.join("board", "Probe")
	relayA := inside.TURN()
	want := []string{"turn:" + relayA.UDPAddr().String() + "?transport=udp", "turn:" + relayA.TCPAddr().String() + "?transport=tcp",
		"turns:" + strings.TrimPrefix(inside.URL(), "https://") + "?transport=tcp"}
	if len(pw.ICEServers) != 1 || strings.Join(pw.ICEServers[0].URLs, " ") != strings.Join(want, " ") {
		t.Fatalf("welcome of node A: ICE servers %+v, want one with %v", pw.ICEServers, want)
	}
	// A credential of node A opens an allocation on A, whose relay
	// reaches A's media port only: what it sends to the edge's media port
	// (on the same address) is dropped. It opens nothing on the edge,
	// whose participant it is not.
	insecure := &tls.Config{InsecureSkipVerify: true}
	if err := allocateAt(t, inside.URL(), insecure, pw.ICEServers[0], func(relay net.PacketConn) {
		dropped := relayA.Stats().Dropped[turn.DroppedPeer]
		if _, err := relay.WriteTo([]byte("to another node"), edge.MediaAddr()); err != nil {
			t.Errorf("send through node A's relay: %v", err)
		}
		wait.For(t, "node A's relay to drop a datagram for the edge's media port", 5*time.Second, func() bool {
			return relayA.Stats().Dropped[turn.DroppedPeer] > dropped
		})
	}); err != nil {
		t.Errorf("allocation on node A with its own credential: %v", err)
	}
	if err := allocateAt(t, edge.URL(), insecure, pw.ICEServers[0], nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("allocation on the edge with node A's credential: %v, want 401 Unauthorized", err)
	}
	if n := edge.TURN().Stats().Refused[turn.RefusedAbsent]; n != 1 {
		t.Errorf("the edge refused %d credentials of participants not its own, want 1", n)
	}
	probe.sendRaw(`{"v":1,"type":"leave"}`)
	wait.For(t, "the probe to leave", 5*time.Second, func() bool { return !relayA.Present(pw.Self.ID) })

	join := func(n *server.Node, name, over string) *client.Session {
		t.Helper()
		s, err := client.Dial(ctx, client.Options{URL: n.URL() + "/r/board", Name: name, InsecureSkipVerify: true,
			Camera: client.NewTestVideo(), Microphone: client.NewTestAudio(), ForceRelay: true, RelayOver: over})
		if err != nil {
			t.Fatalf("%s joins: %v", name, err)
		}
		t.Cleanup(func() { s.Leave() })
		return s
	}
	before := map[*server.Node]turn.Stats{inside: relayA.Stats(), edge: edge.TURN().Stats()}
	ann := join(inside, "Ann", client.RelayTLS)
	out := join(edge, "Out", client.RelayUDP)
	received := func(s *client.Session, from string) (frames, bytes uint64) {
		for _, st := range s.Stats() {
			if st.Name == from && st.Source == "camera" {
				frames += st.Frames
			}
			if st.Name == from {
				bytes += st.Bytes
			}
		}
		return frames, bytes
	}
	for _, c := range []struct {
		s    *client.Session
		from string
	}{{out, "Ann"}, {ann, "Out"}} {
		wait.For(t, c.from+"'s video through the relays", 30*time.Second, func() bool {
			f, _ := received(c.s, c.from)
			return f > 10
		})
	}
	wait.For(t, "both participants' paths", 5*time.Second, func() bool { return len(ann.Paths()) == 2 && len(out.Paths()) == 2 })
	for _, c := range []struct {
		s    *client.Session
		name string
		over string
	}{{ann, "Ann", client.RelayTLS}, {out, "Out", client.RelayUDP}} {
		for _, p := range c.s.Paths() {
			if p.Local != "relay" || p.RelayProtocol != c.over {
				t.Errorf("%s's %s path: %+v, want a relay candidate reached over %s", c.name, p.PC, p, c.over)
			}
		}
	}

	// Each node's relay carried its own participant's media, both ways:
	// at least the frames' bytes (RTP, SRTP and TURN framing come on top).
	_, fromAnn := received(out, "Ann")
	_, fromOut := received(ann, "Out")
	for _, c := range []struct {
		n          *server.Node
		over       string
		up, down   uint64 // what its participant sent, and received
		who, other string
	}{{inside, client.RelayTLS, fromAnn, fromOut, "Ann", "Out"}, {edge, client.RelayUDP, fromOut, fromAnn, "Out", "Ann"}} {
		b, a := before[c.n], c.n.TURN().Stats()
		up, down := a.BytesToPeer-b.BytesToPeer, a.BytesToClient-b.BytesToClient
		t.Logf("%s relayed over %s: %d bytes to its SFU, %d back (frames: %d bytes from %s, %d to)", c.n.Name(), c.over, up, down, c.up, c.who, c.down)
		if a.AllocationsTotal[c.over] == b.AllocationsTotal[c.over] {
			t.Errorf("%s: no allocation over %s: %+v", c.n.Name(), c.over, a.AllocationsTotal)
		}
		if c.up == 0 || c.down == 0 || up < c.up || down < c.down {
			t.Errorf("%s relayed %d bytes up and %d down; %s's frames: %d bytes sent, %d received", c.n.Name(), up, down, c.who, c.up, c.down)
		}
		for reason, n := range a.Refused {
			if n != b.Refused[reason] {
				t.Errorf("%s: %d TURN refusals (%s) for its participant", c.n.Name(), n-b.Refused[reason], reason)
			}
		}
	}
	// The node's metrics (debug listener) count its relay's work.
	resp, err := http.Get("http://" + inside.DebugAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range []struct {
		series string
		least  uint64
	}{{`conclave_turn_allocations_total{transport="tls"}`, 1}, {`conclave_turn_relayed_bytes_total{direction="to_peer"}`, fromAnn},
		{`conclave_turn_relayed_bytes_total{direction="to_client"}`, fromOut}} {
		m := regexp.MustCompile(regexp.QuoteMeta(c.series) + ` (\S+)\n`).FindSubmatch(body)
		if m == nil {
			t.Errorf("node A's /metrics lacks %s:\n%s", c.series, body)
			continue
		}
		if v, err := strconv.ParseFloat(string(m[1]), 64); err != nil || v < float64(c.least) {
			t.Errorf("node A's /metrics: %s %s, want at least %d", c.series, m[1], c.least)
		}
	}
	if st := mgmt.TURN().Stats(); st.BytesToPeer != 0 || st.BytesToClient != 0 {
		t.Errorf("the management node's TURN relayed for the nodes' participants: %+v", st)
	}
	ann.Leave()
	out.Leave()
	wait.For(t, "the relays to end", 5*time.Second, func() bool {
		return relayA.Stats().Allocations[client.RelayTLS] == 0 && edge.TURN().Stats().Allocations[client.RelayUDP] == 0
	})
}
