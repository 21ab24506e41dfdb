package turn

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"conclave/internal/pki"
	"conclave/internal/testutil/fakeclock"
)

// rig is a TURN server on loopback with its three transports (TLS
// through a Demux that also serves HTTP), a fake clock, and a UDP socket
// standing for the SFU's media port: the only peer it may relay to.
type rig struct {
	t      *testing.T
	srv    *Server
	clock  *fakeclock.Clock
	media  *net.UDPConn
	https  string // host:port of the shared HTTPS/TURN port
	client *tls.Config
}

func newRig(t *testing.T, adjust func(*Config)) *rig {
	t.Helper()
	media, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	m, err := pki.Ensure(pki.Options{Dir: t.TempDir(), Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.CAPool(m)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.ServerTLSConfig(m.Certificate)
	cfg.NextProtos = append(cfg.NextProtos, ALPN)
	log := testLogger(t)
	d := NewDemux(ln, true, log)
	d.SetTLSConfig(cfg)
	hs := &http.Server{Handler: WithTLSState(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "no TLS state", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "hello over "+r.Proto)
	})), ConnContext: ConnContext, TLSConfig: cfg}
	go hs.Serve(d.HTTP())
	t.Cleanup(func() { hs.Close(); d.Close() })

	clock := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	c := Config{UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", TLS: d.TURN(), TLSPort: ln.Addr().(*net.TCPAddr).Port,
		Host: "127.0.0.1", RelayIP: netip.MustParseAddr("127.0.0.1"),
		Peers: []netip.AddrPort{media.LocalAddr().(*net.UDPAddr).AddrPort()}, Now: clock.Now, Logger: log}
	if adjust != nil {
		adjust(&c)
	}
	srv, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &rig{t: t, srv: srv, clock: clock, media: media, https: ln.Addr().String(),
		client: pki.ClientTLSConfig(roots)}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CONCLAVE_TEST_DEBUG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
}

// dial connects a TURN client over transport (udp, tcp, tls) with the
// credentials of the participant's ICE server entry.
func (r *rig) dial(transport string, ice iceCred) *pionturn.Client {
	r.t.Helper()
	var conn net.PacketConn
	var server string
	switch transport {
	case TransportUDP:
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			r.t.Fatal(err)
		}
		conn, server = c, r.srv.UDPAddr().String()
	case TransportTCP:
		c, err := net.Dial("tcp", r.srv.TCPAddr().String())
		if err != nil {
			r.t.Fatal(err)
		}
		conn, server = pionturn.NewSTUNConn(c), c.RemoteAddr().String()
	case TransportTLS:
		c, err := tls.Dial("tcp", r.https, r.client)
		if err != nil {
			r.t.Fatal(err)
		}
		conn, server = pionturn.NewSTUNConn(c), r.https
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, STUNServerAddr: server,
		Conn: conn, Username: ice.user, Password: ice.pass, Realm: Realm, RTO: 200 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cl.Close(); conn.Close() })
	return cl
}

type iceCred struct{ user, pass string }

// credentials issues a participant's credential and checks its URLs.
func (r *rig) credentials(participant string) iceCred {
	r.t.Helper()
	servers := r.srv.ICEServers(participant)
	if len(servers) != 1 {
		r.t.Fatalf("ICE servers: %+v", servers)
	}
	s := servers[0]
	want := []string{
		"turn:" + r.srv.UDPAddr().String() + "?transport=udp",
		"turn:" + r.srv.TCPAddr().String() + "?transport=tcp",
		"turns:" + r.https + "?transport=tcp",
	}
	if strings.Join(s.URLs, " ") != strings.Join(want, " ") {
		r.t.Errorf("URLs %v, want %v", s.URLs, want)
	}
	if !strings.HasSuffix(s.Username, ":"+participant) {
		r.t.Errorf("username %q does not name %s", s.Username, participant)
	}
	return iceCred{s.Username, s.Credential}
}

// roundTrip sends a datagram through relay to the media socket, checks
// it arrives from the relay's address, answers, and checks the answer
// comes back through the relay.
func (r *rig) roundTrip(relay net.PacketConn, payload string) {
	r.t.Helper()
	if _, err := relay.WriteTo([]byte(payload), r.media.LocalAddr()); err != nil {
		r.t.Fatalf("relay to the media port: %v", err)
	}
	buf := make([]byte, 1500)
	r.media.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := r.media.ReadFromUDP(buf)
	if err != nil {
		r.t.Fatalf("media port: nothing relayed: %v", err)
	}
	if string(buf[:n]) != payload {
		r.t.Fatalf("media port got %q, want %q", buf[:n], payload)
	}
	if from.String() != relay.LocalAddr().String() {
		r.t.Errorf("relayed from %v, the allocation's relayed address is %v", from, relay.LocalAddr())
	}
	if _, err := r.media.WriteToUDP([]byte("re:"+payload), from); err != nil {
		r.t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, src, err := relay.ReadFrom(buf)
	if err != nil {
		r.t.Fatalf("no answer through the relay: %v", err)
	}
	if string(buf[:n]) != "re:"+payload || src.String() != r.media.LocalAddr().String() {
		r.t.Errorf("relay got %q from %v", buf[:n], src)
	}
}

// TestRelayOverEachTransport: over UDP, TCP and TLS on the HTTPS port,
// a participant's credential opens an allocation whose relay carries
// datagrams to the media port and back; the HTTPS port keeps serving
// HTTP/2 and HTTP/1.1 (with and without ALPN) beside TURN.
func TestRelayOverEachTransport(t *testing.T) {
	r := newRig(t, nil)
	cred := r.credentials("p1")
	for _, tr := range []string{TransportUDP, TransportTCP, TransportTLS} {
		t.Run(tr, func(t *testing.T) {
			relay, err := r.dial(tr, cred).Allocate()
			if err != nil {
				t.Fatalf("allocate over %s: %v", tr, err)
			}
			defer relay.Close()
			if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("relayed address %v, want the relay address 127.0.0.1", ip)
			}
			r.roundTrip(relay, "hello over "+tr)
			st := r.srv.Stats()
			if st.Allocations[tr] != 1 || st.AllocationsTotal[tr] != 1 {
				t.Errorf("allocations over %s: open %d, total %d; want 1 and 1", tr, st.Allocations[tr], st.AllocationsTotal[tr])
			}
		})
	}
	st := r.srv.Stats()
	if st.BytesToPeer == 0 || st.BytesToClient == 0 {
		t.Errorf("relayed bytes not counted: %+v", st)
	}
	for reason, n := range st.Refused {
		if n != 0 {
			t.Errorf("%d refusals for %s", n, reason)
		}
	}

	// HTTP on the same port: HTTP/2 and HTTP/1.1 by ALPN, and HTTP/1.1
	// without ALPN (told by its first byte), all with their TLS state.
	for _, protos := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}, nil} {
		cfg := r.client.Clone()
		cfg.NextProtos = protos
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: len(protos) == 2}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + r.https + "/")
		if err != nil {
			t.Fatalf("HTTPS with ALPN %v: %v", protos, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		want := "hello over HTTP/1.1"
		if len(protos) == 2 {
			want = "hello over HTTP/2.0"
		}
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("HTTPS with ALPN %v: %s %q, want %q", protos, resp.Status, body, want)
		}
	}

	// A TURN client that names TURN in ALPN (RFC 7443).
	cfg := r.client.Clone()
	cfg.NextProtos = []string{ALPN}
	c, err := tls.Dial("tcp", r.https, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ConnectionState().NegotiatedProtocol != ALPN {
		t.Fatalf("ALPN %q", c.ConnectionState().NegotiatedProtocol)
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: r.https, STUNServerAddr: r.https,
		Conn: pionturn.NewSTUNConn(c), Username: cred.user, Password: cred.pass, Realm: Realm})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SendBindingRequest(); err != nil {
		t.Errorf("binding request over TLS with ALPN %s: %v", ALPN, err)
	}
}

// TestExpiredCredential: a credential cannot open an allocation once it
// has expired, while the allocation it opened before keeps working
// (new permissions, refreshes) as long as its participant is in a
// meeting; once the participant leaves, its relays end and its
// credentials are refused.
func TestExpiredCredential(t *testing.T) {
	r := newRig(t, func(c *Config) { c.TTL = 5 * time.Minute })
	cred := r.credentials("p1")
	cl := r.dial(TransportUDP, cred)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	r.roundTrip(relay, "before expiry")

	r.clock.Advance(5 * time.Minute)
	if _, err := r.dial(TransportTLS, cred).Allocate(); !isCode(err, stun.CodeUnauthorized) {
		t.Fatalf("allocation with an expired credential: %v, want 401 Unauthorized", err)
	}
	if n := r.srv.Stats().Refused[RefusedExpired]; n == 0 {
		t.Errorf("expired refusals not counted")
	}
	// The allocation opened before keeps working: its requests
	// (CreatePermission, Refresh) carry the expired credential.
	if err := cl.CreatePermission(r.media.LocalAddr()); err != nil {
		t.Errorf("permission on an allocation opened before expiry: %v", err)
	}
	r.roundTrip(relay, "after expiry")

	// Fresh credentials open allocations again.
	fresh := r.credentials("p1")
	if _, err := r.dial(TransportTCP, fresh).Allocate(); err != nil {
		t.Fatalf("allocation with a fresh credential: %v", err)
	}

	// The participant leaves: its relay sockets close at once (their
	// ports are free again), its allocations end, its fresh credential
	// is refused.
	r.srv.Release("p1")
	if c, err := net.ListenUDP("udp", relay.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Errorf("the relay socket of a departed participant is still open: %v", err)
	} else {
		c.Close()
	}
	waitFor(t, "the departed participant's allocations to end", func() bool {
		n := r.srv.Stats().Allocations
		return n[TransportUDP]+n[TransportTCP]+n[TransportTLS] == 0
	})
	if _, err := r.dial(TransportUDP, fresh).Allocate(); !isCode(err, stun.CodeUnauthorized) {
		t.Errorf("allocation of a departed participant: %v, want 401 Unauthorized", err)
	}
	if n := r.srv.Stats().Refused[RefusedAbsent]; n == 0 {
		t.Errorf("refusals of departed participants not counted")
	}
}

// TestForgedCredentials: a username that was not issued, a wrong
// password, another realm or a malformed username open nothing.
func TestForgedCredentials(t *testing.T) {
	r := newRig(t, nil)
	good := r.credentials("p1")
	expiry, _, _ := strings.Cut(good.user, ":")
	for _, c := range []struct {
		name   string
		cred   iceCred
		reason string
	}{
		{"wrong password", iceCred{good.user, "AAAA" + good.pass[4:]}, RefusedCredential},
		{"password of another participant", iceCred{expiry + ":p2", good.pass}, RefusedAbsent},
		{"later expiry, same password", iceCred{"9999999999:p1", good.pass}, RefusedCredential},
		{"no expiry", iceCred{"p1", good.pass}, RefusedMalformed},
		{"not a number", iceCred{"soon:p1", good.pass}, RefusedMalformed},
	} {
		before := r.srv.Stats().Refused[c.reason]
		if _, err := r.dial(TransportUDP, c.cred).Allocate(); !isCode(err, stun.CodeUnauthorized) {
			t.Errorf("%s: %v, want 401 Unauthorized", c.name, err)
		}
		if r.srv.Stats().Refused[c.reason] == before {
			t.Errorf("%s: not counted as %s", c.name, c.reason)
		}
	}
	if st := r.srv.Stats(); st.AllocationsTotal[TransportUDP] != 0 {
		t.Errorf("%d allocations opened with forged credentials", st.AllocationsTotal[TransportUDP])
	}
}

// TestRelayOnlyToMedia: an allocation cannot reach any address but the
// media port: a permission toward another address is refused, and a
// datagram to another port of the media address is dropped, as is one
// from it; an RFC 6062 TCP relay is refused.
func TestRelayOnlyToMedia(t *testing.T) {
	r := newRig(t, nil)
	cred := r.credentials("p1")
	cl := r.dial(TransportUDP, cred)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	r.roundTrip(relay, "to the media port")

	// Another address: 127.0.0.2 (loopback, this machine).
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if err := cl.CreatePermission(stranger.LocalAddr()); !isCode(err, stun.CodeForbidden) {
		t.Errorf("permission toward %v: %v, want 403 Forbidden", stranger.LocalAddr(), err)
	}
	relay.WriteTo([]byte("to a stranger"), stranger.LocalAddr())
	// Datagrams leave the relay in order: once a later one reached the
	// media port, the stranger's would be there too.
	r.roundTrip(relay, "marker 1")
	if got := queued(t, stranger); got != "" {
		t.Errorf("a stranger at %v received %q through the relay", stranger.LocalAddr(), got)
	}
	if r.srv.Stats().Refused[RefusedPeer] == 0 {
		t.Errorf("refused permissions not counted")
	}

	// Another port of the media address: the permission is per address
	// (RFC 8656), the relay drops what is not for the media port.
	neighbour, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer neighbour.Close()
	dropped := r.srv.Stats().Dropped[DroppedPeer]
	relay.WriteTo([]byte("to a neighbour"), neighbour.LocalAddr())
	neighbour.WriteTo([]byte("from a neighbour"), relay.LocalAddr())
	// roundTrip checks that the next datagram through the relay, each
	// way, is its own.
	r.roundTrip(relay, "marker 2")
	if got := queued(t, neighbour); got != "" {
		t.Errorf("another port of the media address received %q through the relay", got)
	}
	if d := r.srv.Stats().Dropped[DroppedPeer] - dropped; d != 2 {
		t.Errorf("dropped datagrams to and from another port: %d counted, want 2", d)
	}

	// A TCP relay (RFC 6062).
	if _, err := r.dial(TransportTCP, cred).AllocateTCP(); err == nil {
		t.Errorf("a TCP relay was allocated")
	}
	if r.srv.Stats().Refused[RefusedTCPRelay] == 0 {
		t.Errorf("refused TCP relays not counted")
	}
}

// TestQuotas: a participant holds at most PerParticipant allocations,
// and an allocation relays at most MaxBitrate each way.
func TestQuotas(t *testing.T) {
	r := newRig(t, func(c *Config) { c.PerParticipant = 2; c.MaxBitrate = 80_000 }) // 10 kB/s, 5 kB at once
	cred := r.credentials("p1")
	var relays []net.PacketConn
	for i := 0; i < 2; i++ {
		relay, err := r.dial(TransportUDP, cred).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		relays = append(relays, relay)
	}
	if _, err := r.dial(TransportUDP, cred).Allocate(); !isCode(err, stun.CodeAllocQuotaReached) {
		t.Errorf("third allocation of a participant: %v, want 486 Allocation Quota Reached", err)
	}
	if r.srv.Stats().Refused[RefusedQuota] == 0 {
		t.Errorf("quota refusals not counted")
	}
	// Another participant is not held back.
	if _, err := r.dial(TransportUDP, r.credentials("p2")).Allocate(); err != nil {
		t.Errorf("another participant's allocation: %v", err)
	}

	// The bit rate: 5 kB pass at once, the next kilobyte waits for the
	// bucket to refill (the clock does not move).
	relay := relays[0]
	chunk := bytes.Repeat([]byte{'x'}, 1000)
	r.roundTrip(relay, "first") // permission and channel in place
	for i := 0; i < 8; i++ {
		relay.WriteTo(chunk, r.media.LocalAddr())
	}
	got := 0
	buf := make([]byte, 1500)
	for {
		r.media.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := r.media.ReadFromUDP(buf)
		if err != nil {
			break
		}
		got += n
	}
	if got < 3000 || got > 5000 {
		t.Errorf("%d bytes relayed from a burst of 8000 with 5 kB allowed at once", got)
	}
	if r.srv.Stats().Dropped[DroppedRate] == 0 {
		t.Errorf("datagrams beyond the rate not counted")
	}
	// A second later the bucket holds 5 kB again.
	r.clock.Advance(time.Second)
	r.roundTrip(relay, "after a second")
}

// isCode reports whether err is a TURN error response with code.
func isCode(err error, code stun.ErrorCode) bool {
	return err != nil && strings.Contains(err.Error(), "error "+strconv.Itoa(int(code)))
}

// queued returns a datagram already waiting on c, "" if none, without
// waiting (a read deadline in the past would not even look).
func queued(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n := 0
	if err := rc.Read(func(fd uintptr) bool {
		n, _, err = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil || n <= 0 {
		return ""
	}
	return string(buf[:n])
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
