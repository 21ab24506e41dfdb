package e2e

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	pionturn "github.com/pion/turn/v5"

	"conclave/internal/config"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/netns"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
	"conclave/internal/turn"
)

// firewalled is a meeting across a network link whose far side opens
// nothing but a few TCP ports of the server: the server and two
// participants' browsers on the near side, free, and one browser on the
// far side behind the firewall.
type firewalled struct {
	link      *netns.Link
	srv       *testserver.Server
	fw        *netns.Firewall
	near, far *browser.Browser
}

// newFirewalled starts the server inside Near (adjust changes its
// configuration) and lets Far reach only the TCP ports that ports
// returns, of the server's address.
func newFirewalled(t *testing.T, adjust func(*config.Config), ports func(*testserver.Server) []int) *firewalled {
	t.Helper()
	f := &firewalled{link: netns.New(t)}
	mediaNet := f.link.Net(t)
	level := slog.LevelWarn
	if os.Getenv("CONCLAVE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	f.link.Do(t, func() {
		f.srv = testserver.Start(t, testserver.Options{Logger: testlog.Logger(t, level), Host: f.link.NearIP, Config: adjust,
			Server: server.Options{ListenRelay: f.link.ListenUDP, MediaNet: mediaNet}}, "alpha")
	})
	f.fw = f.link.AllowOnlyTCP(t, f.link.Far, f.link.NearIP, ports(f.srv)...)
	chromium := browser.Chromium(t)
	flags := browser.DefaultFlags()
	delete(flags, "allow-loopback-in-peer-connection")
	f.near = browser.StartExec(t, f.link.Wrapper(t, f.link.Near, chromium), flags)
	f.far = browser.StartExec(t, f.link.Wrapper(t, f.link.Far, chromium), flags)
	f.near.Allow(f.link.Owns)
	f.far.Allow(f.link.Owns)
	return f
}

// httpsPort is the port of the server's web address.
func httpsPort(t *testing.T, srv *testserver.Server) int {
	t.Helper()
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("server URL %s without a port", srv.URL())
	}
	return p
}

// checkE2EE waits until every page shows the meeting end-to-end encrypted
// with the same code, and encrypts its media in a frame transform.
func checkE2EE(t *testing.T, people ...*participant) {
	t.Helper()
	code := sameCode(t, people...)
	for _, p := range people {
		var transform string
		p.Eval(`window.conclaveE2EE?.transform || ''`, &transform)
		if transform != "script-transform" && transform != "encoded-streams" {
			t.Fatalf("%s encrypts media with %q; want a frame transform", p.name, transform)
		}
	}
	t.Logf("end-to-end encrypted, meeting code %s", code)
}

// candidatePairs lists the candidate pairs of p's peer connections and
// their state, for failure messages.
func (p *participant) candidatePairs() string {
	var out string
	err := p.Eval(`(async () => {
	  const lines = [];
	  for (const pc of (window.__pcs || [])) {
	    if (pc.connectionState === 'closed') continue;
	    lines.push('pc ' + pc.getTransceivers().map((t) => t.direction).join(','));
	    const st = await pc.getStats();
	    const end = (c) => c ? c.candidateType + ' ' + c.protocol + (c.relayProtocol ? '/' + c.relayProtocol : '') + ' ' + c.address + ':' + c.port : '?';
	    st.forEach((s) => {
	      if (s.type === 'remote-candidate' || s.type === 'local-candidate') lines.push('  ' + s.type + ' ' + end(s));
	      if (s.type !== 'candidate-pair') return;
	      lines.push('  ' + end(st.get(s.localCandidateId)) + ' -> ' + end(st.get(s.remoteCandidateId)) + ': ' + s.state +
	        (s.nominated ? ' nominated' : '') + ', requests ' + s.requestsSent + ', responses ' + s.responsesReceived);
	    });
	  }
	  return lines.join('\n');
	})()`, &out)
	if err != nil {
		return err.Error()
	}
	return out
}

// TestOnlyHTTPSOpen: Carol's network lets through nothing but TCP to the
// server's HTTPS port (nftables in her namespace drops UDP and every
// other port, both ways). She joins a meeting with Alice and Bob, with
// end-to-end encryption on, decodes their video and hears them, and
// they her: her browser's media go through the TURN server over TLS on
// the HTTPS port.
func TestOnlyHTTPSOpen(t *testing.T) {
	f := newFirewalled(t, nil, func(srv *testserver.Server) []int { return []int{httpsPort(t, srv)} })
	alice := join(t, f.near, f.srv.URL(), "alpha", "Alice")
	bob := join(t, f.near, f.srv.URL(), "alpha", "Bob")
	carol := join(t, f.far, f.srv.URL(), "alpha", "Carol")
	checkE2EE(t, alice, bob, carol)

	carol.waitMedia(alice, "camera", true)
	carol.waitMedia(bob, "camera", true)
	alice.waitMedia(carol, "camera", true)
	bob.waitMedia(carol, "camera", true)

	// Carol's selected pairs: a relay candidate reached over TLS.
	pairs := carol.CheckPairs(t)
	if len(pairs.Pairs) == 0 {
		t.Fatalf("Carol: no selected candidate pair")
	}
	for _, p := range pairs.Pairs {
		if p.Local.Type != "relay" || p.Local.RelayProtocol != "tls" {
			t.Errorf("Carol's selected pair %s, want a relay candidate over TLS; her candidate pairs:\n%s", p, carol.candidatePairs())
		}
	}
	st := f.srv.TURN().Stats()
	t.Logf("TURN: allocations open %v (total %v), %d bytes relayed to the SFU, %d back; refusals %v",
		st.Allocations, st.AllocationsTotal, st.BytesToPeer, st.BytesToClient, st.Refused)
	if st.Allocations[turn.TransportTLS] == 0 || st.BytesToPeer == 0 || st.BytesToClient == 0 {
		t.Errorf("no media through TURN over TLS: %+v", st)
	}
	// The firewall did its part: Carol's browser tried UDP (its host
	// candidates, TURN over UDP) and other ports, and was stopped.
	udp, tcp := f.fw.Dropped(t)
	t.Logf("firewall: %d UDP and %d TCP packets dropped", udp, tcp)
	if udp == 0 {
		t.Errorf("the firewall dropped no UDP: was Carol's browser behind it?")
	}
}

// TestICETCPOnly: Carol's network drops UDP and lets through TCP to the
// server's HTTPS and ICE-TCP ports only: her media flow over ICE-TCP to
// the SFU's passive TCP port, both ways, end-to-end encrypted. The
// server offers no TURN here: with TURN over TLS on the HTTPS port too,
// chromium connects over whichever path answers first (TestOnlyHTTPSOpen
// covers the relay), and this test is about the ICE-TCP path.
func TestICETCPOnly(t *testing.T) {
	iceTCPNoTURN := func(c *config.Config) {
		c.MediaTCP = c.MediaUDP // host:0
		c.TURNUDP, c.TURNTCP, c.TURNTLS = "", "", false
	}
	f := newFirewalled(t, iceTCPNoTURN, func(srv *testserver.Server) []int {
		return []int{httpsPort(t, srv), srv.MediaTCPAddr().(*net.TCPAddr).Port}
	})
	iceTCP := f.srv.MediaTCPAddr().(*net.TCPAddr).Port
	alice := join(t, f.near, f.srv.URL(), "alpha", "Alice")
	carol := join(t, f.far, f.srv.URL(), "alpha", "Carol")
	checkE2EE(t, alice, carol)
	carol.waitMedia(alice, "camera", true)
	alice.waitMedia(carol, "camera", true)

	pairs := carol.CheckPairs(t)
	if len(pairs.Pairs) == 0 {
		t.Fatalf("Carol: no selected candidate pair")
	}
	for _, p := range pairs.Pairs {
		if p.Local.Protocol != "tcp" || p.Remote.Protocol != "tcp" || p.Remote.Port != iceTCP {
			t.Errorf("Carol's selected pair %s, want ICE-TCP to the server's port %d; her candidate pairs:\n%s", p, iceTCP, carol.candidatePairs())
		}
	}
	udp, _ := f.fw.Dropped(t)
	if udp == 0 {
		t.Errorf("the firewall dropped no UDP: was Carol's browser behind it?")
	}
}

// allocateOverTLS opens a TURN allocation over TLS on srv's HTTPS port, as
// a browser behind a firewall that lets only that port through does.
func allocateOverTLS(t *testing.T, srv *testserver.Server, when string) {
	t.Helper()
	if srv.TURN() == nil {
		t.Fatal("no TURN server")
	}
	const who = "turn-tls-probe"
	ice := srv.TURN().ICEServers(who)[0]
	defer srv.TURN().Release(who)
	addr := strings.TrimPrefix(srv.URL(), "https://")
	c, err := tls.Dial("tcp", addr, pki.ClientTLSConfig(srv.Roots))
	if err != nil {
		t.Fatalf("%s: %v", when, err)
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
	if err != nil {
		t.Fatalf("TURN over TLS on the HTTPS port %s: %v", when, err)
	}
	relay.Close()
}
