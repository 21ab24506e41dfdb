package server_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"conclave/internal/config"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
	"conclave/internal/turn"
)

// openTURNServer runs a node with TURN on loopback, a fake clock, and
// the open rooms given; adjust changes the configuration first.
func openTURNServer(t *testing.T, clk *fakeclock.Clock, adjust func(*config.Config), rooms ...string) *testserver.Server {
	t.Helper()
	return testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk}, Config: adjust}, rooms...)
}

// allocate opens a TURN allocation over TLS on the HTTPS port with the
// credential of ice, and returns the error of the Allocate request.
func allocate(t *testing.T, srv *testserver.Server, ice signal.ICEServer) error {
	t.Helper()
	return allocateAt(t, srv.URL(), pki.ClientTLSConfig(srv.Roots), ice, nil)
}

// allocateAt is allocate on the HTTPS port of the node at base; use,
// when not nil, gets the relay before it is closed.
func allocateAt(t *testing.T, base string, tlsCfg *tls.Config, ice signal.ICEServer, use func(relay net.PacketConn)) error {
	t.Helper()
	addr := strings.TrimPrefix(base, "https://")
	c, err := tls.Dial("tcp", addr, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := pionturn.NewSTUNConn(c)
	defer conn.Close()
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: addr, STUNServerAddr: addr, Conn: conn,
		Username: ice.Username, Password: ice.Credential, Realm: turn.Realm})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := cl.Allocate()
	if err == nil {
		if use != nil {
			use(relay)
		}
		relay.Close()
	}
	return err
}

// TestTURNCredentials: the welcome gives each participant its own TURN
// credential for the three transports; a credential of one meeting, used
// by someone in another, stops opening allocations once it expires;
// fresh credentials arrive before expiry (ice-servers); a participant's
// credentials die with its leaving.
func TestTURNCredentials(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	srv := openTURNServer(t, clk, nil, "alpha", "beta")
	relay := srv.TURN()
	ttl := config.Defaults().TURNTTL

	alice := dial(t, srv)
	aw := alice.join("alpha", "Alice")
	bob := dial(t, srv)
	bw := bob.join("beta", "Bob")
	if len(aw.ICEServers) != 1 || aw.ICEPolicy != "" {
		t.Fatalf("Alice's welcome: ICE servers %+v, policy %q", aw.ICEServers, aw.ICEPolicy)
	}
	aliceCred, bobCred := aw.ICEServers[0], bw.ICEServers[0]
	https := strings.TrimPrefix(srv.URL(), "https://")
	want := []string{"turn:" + relay.UDPAddr().String() + "?transport=udp", "turn:" + relay.TCPAddr().String() + "?transport=tcp",
		"turns:" + https + "?transport=tcp"}
	if strings.Join(aliceCred.URLs, " ") != strings.Join(want, " ") {
		t.Errorf("TURN URLs %v, want %v", aliceCred.URLs, want)
	}
	if !strings.HasSuffix(aliceCred.Username, ":"+aw.Self.ID) || aliceCred.Username == bobCred.Username || aliceCred.Credential == bobCred.Credential {
		t.Errorf("credentials not per participant: %+v and %+v", aliceCred, bobCred)
	}

	// Bob, in meeting beta, has Alice's credential of meeting alpha: it
	// works while it is valid (a bearer credential, toward this node's
	// SFU only), and not once it expired.
	if err := allocate(t, srv, aliceCred); err != nil {
		t.Fatalf("allocation with a valid credential: %v", err)
	}
	// Fresh credentials every half lifetime, for everyone in a meeting.
	fresh := func() [2]signal.ICEServer {
		t.Helper()
		var out [2]signal.ICEServer
		for i, c := range []*wsClient{alice, bob} {
			m := c.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState, signal.TypeAnnounce)
			if m.Type != signal.TypeICEServers || len(m.ICEServers) != 1 {
				t.Fatalf("got %+v, want ice-servers", m)
			}
			out[i] = m.ICEServers[0]
		}
		return out
	}
	clk.Advance(ttl / 2)
	first := fresh()
	clk.Advance(ttl / 2) // the welcome's credentials expire now
	second := fresh()
	if first[0].Username == aliceCred.Username || second[0].Username == first[0].Username {
		t.Errorf("refreshed credentials are not new: %s, %s, %s", aliceCred.Username, first[0].Username, second[0].Username)
	}
	if err := allocate(t, srv, aliceCred); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("allocation with another meeting's expired credential: %v, want 401 Unauthorized", err)
	}
	if err := allocate(t, srv, bobCred); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("allocation with Bob's own expired credential: %v, want 401 Unauthorized", err)
	}
	if n := relay.Stats().Refused[turn.RefusedExpired]; n != 2 {
		t.Errorf("%d expired credentials refused, want 2", n)
	}
	if err := allocate(t, srv, second[1]); err != nil {
		t.Errorf("allocation with Bob's fresh credential: %v", err)
	}

	// Alice leaves: even her fresh credential is refused.
	alice.sendRaw(`{"v":1,"type":"leave"}`)
	wait.For(t, "Alice to leave", 5*time.Second, func() bool { return !relay.Present(aw.Self.ID) })
	if err := allocate(t, srv, second[0]); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("allocation with the credential of a participant who left: %v, want 401 Unauthorized", err)
	}
	if n := relay.Stats().Refused[turn.RefusedAbsent]; n != 1 {
		t.Errorf("%d credentials of departed participants refused, want 1", n)
	}
}

// TestTURNSettings: --always-relay asks clients for relayed media only;
// without TURN the welcome offers none, and --always-relay is refused.
func TestTURNSettings(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	srv := openTURNServer(t, clk, func(c *config.Config) { c.AlwaysRelay = true }, "alpha")
	if w := dial(t, srv).join("alpha", "Alice"); w.ICEPolicy != "relay" || len(w.ICEServers) != 1 {
		t.Errorf("welcome with --always-relay: policy %q, servers %+v", w.ICEPolicy, w.ICEServers)
	}

	off := func(c *config.Config) { c.TURNUDP, c.TURNTCP, c.TURNTLS = "", "", false }
	srv = openTURNServer(t, clk, off, "alpha")
	if srv.TURN() != nil {
		t.Error("a TURN server runs with every transport off")
	}
	if w := dial(t, srv).join("alpha", "Alice"); w.ICEPolicy != "" || len(w.ICEServers) != 0 {
		t.Errorf("welcome without TURN: policy %q, servers %+v", w.ICEPolicy, w.ICEServers)
	}
	// TURN over TLS off: a connection that starts like TURN is closed,
	// HTTPS goes on.
	c, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL(), "https://"), pki.ClientTLSConfig(srv.Roots))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}) // a STUN binding request
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 100)); err == nil || isTimeout(err) {
		t.Errorf("a TURN connection on the HTTPS port with TURN off: read %d bytes, %v; want it closed", n, err)
	}
	c.Close()

	cfg := config.Defaults()
	off(&cfg)
	cfg.AlwaysRelay = true
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--always-relay needs the TURN server") {
		t.Errorf("--always-relay without TURN: %v", err)
	}
	for _, bad := range []func(*config.Config){
		func(c *config.Config) { c.TURNTTL = 30 * time.Second },
		func(c *config.Config) { c.TURNTTL = 2 * time.Hour },
		func(c *config.Config) { c.TURNUDP = "3478" },
		func(c *config.Config) { c.TURNRelayIP = "localhost" },
		func(c *config.Config) { c.TURNMaxBitrate = 1000 },
	} {
		cfg := config.Defaults()
		bad(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("configuration accepted: TTL %v, UDP %q, relay IP %q, bit rate %d", cfg.TURNTTL, cfg.TURNUDP, cfg.TURNRelayIP, cfg.TURNMaxBitrate)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
