package sipedge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"conclave/internal/audit"
	"conclave/internal/devca"
	"conclave/internal/guard"
	"conclave/internal/pki"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

type fixture struct {
	edge  *Edge
	ca    *devca.Authority
	st    *store.SQLite
	audit *audit.Log
	guard *guard.Guard
	clk   *fakeclock.Clock
	roots *x509.CertPool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := fakeclock.New(time.Now())
	lg := audit.NewLog(st, clk)
	ca, err := devca.Open(devca.Config{Dir: filepath.Join(dir, "devca"), Domain: "conclave.test", BaseURL: "https://127.0.0.1:8443",
		Clock: clk, Audit: lg}, st, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		if _, err := st.CreateUser(context.Background(), store.User{Username: name, DisplayName: name, Role: store.RoleUser, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := guard.New(guard.DefaultConfig(), clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	cdrs, err := OpenCDRLog(filepath.Join(dir, "sip"), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Listen: "127.0.0.1:0", Domain: "conclave.test", Host: "127.0.0.1", RelayIP: netip.MustParseAddr("127.0.0.1"),
		Certificate: cert, Clock: clk}, Deps{CA: ca, Guard: g, Audit: lg, CDRs: cdrs, Directory: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	return &fixture{edge: e, ca: ca, st: st, audit: lg, guard: g, clk: clk, roots: roots}
}

// device enrols a key for username at ca and returns its TLS identity.
func device(t *testing.T, ca *devca.Authority, st *store.SQLite, username string) (tls.Certificate, devca.Issued) {
	t.Helper()
	ctx := context.Background()
	u, err := st.UserByName(ctx, username)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := ca.CreateToken(ctx, u, "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := devca.GenerateKey("ecdsa-p256")
	csr, _ := devca.MakeCSR(key, "x")
	iss, err := ca.Enrol(ctx, tok, csr, "")
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{iss.Cert.Raw}, PrivateKey: key, Leaf: iss.Cert}, iss
}

// sipConn is a raw SIP-over-TLS client.
type sipConn struct {
	t    *testing.T
	c    *tls.Conn
	r    *bufio.Reader
	cseq int
}

func (f *fixture) dial(t *testing.T, cert *tls.Certificate) (*sipConn, error) {
	t.Helper()
	conf := pki.ClientTLSConfig(f.roots)
	conf.ServerName = "127.0.0.1"
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.Dial("tcp", f.edge.Addr().String(), conf)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	sc := &sipConn{t: t, c: c, r: bufio.NewReader(c)}
	// In TLS 1.3 a refused client certificate shows at the first read.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = sc.r.Peek(1)
	c.SetReadDeadline(time.Time{})
	var ne interface{ Timeout() bool }
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		return nil, err
	}
	return sc, nil
}

// register sends a REGISTER for aor and returns the response status.
func (s *sipConn) register(aor string, expires int) (int, error) {
	code, _, err := s.send(aor, expires, "")
	return code, err
}

// registerAuth sends a REGISTER with an Authorization header (none when
// empty) and returns the status and the challenges of the answer.
func (s *sipConn) registerAuth(aor, authorization string) (int, []string, error) {
	return s.send(aor, 600, authorization)
}

func (s *sipConn) send(aor string, expires int, authorization string) (int, []string, error) {
	s.cseq++
	local := s.c.LocalAddr().String()
	user := strings.TrimPrefix(strings.Split(aor, "@")[0], "sip:")
	msg := fmt.Sprintf("REGISTER sip:conclave.test SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s;branch=z9hG4bK%d%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <%s>;tag=t1\r\nTo: <%s>\r\nCall-ID: reg-%s\r\nCSeq: %d REGISTER\r\n"+
		"Contact: <sip:%s@%s;transport=tls>\r\nExpires: %d\r\n",
		local, time.Now().UnixNano(), s.cseq, aor, aor, user, s.cseq, user, local, expires)
	if authorization != "" {
		msg += "Authorization: " + authorization + "\r\n"
	}
	msg += "Content-Length: 0\r\n\r\n"
	if _, err := io.WriteString(s.c, msg); err != nil {
		return 0, nil, err
	}
	return s.readResponse()
}

func (s *sipConn) readStatus() (int, error) {
	code, _, err := s.readResponse()
	return code, err
}

func (s *sipConn) readResponse() (int, []string, error) {
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer s.c.SetReadDeadline(time.Time{})
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, nil, err
		}
		if !strings.HasPrefix(line, "SIP/2.0 ") {
			continue
		}
		code, _ := strconv.Atoi(strings.Fields(line)[1])
		n := 0
		var chals []string
		for {
			h, err := s.r.ReadString('\n')
			if err != nil {
				return 0, nil, err
			}
			h = strings.TrimSpace(h)
			if h == "" {
				break
			}
			k, v, ok := strings.Cut(h, ":")
			if ok && strings.EqualFold(k, "Content-Length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if ok && strings.EqualFold(k, "WWW-Authenticate") {
				chals = append(chals, strings.TrimSpace(v))
			}
		}
		if _, err := io.CopyN(io.Discard, s.r, int64(n)); err != nil {
			return 0, nil, err
		}
		if code >= 200 {
			return code, chals, nil
		}
	}
}

func (f *fixture) audited(t *testing.T, action string) []store.AuditRecord {
	t.Helper()
	recs, err := f.audit.List(context.Background(), store.AuditFilter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// auditedN waits for n records of action: a refused handshake is audited
// by the edge after the client has seen the refusal.
func (f *fixture) auditedN(t *testing.T, action string, n int) []store.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := f.audited(t, action)
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(10 * time.Millisecond) // polling the store: it has no change feed
	}
}

func TestRegisterBindsTheCertificatesAddressOnly(t *testing.T) {
	f := newFixture(t)
	cert, _ := device(t, f.ca, f.st, "alice")
	c, err := f.dial(t, &cert)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.register("sip:alice@conclave.test", 600); code != 200 {
		t.Fatalf("alice registering as alice: %d %v", code, err)
	}
	if !f.edge.Online("sip:alice@conclave.test") {
		t.Fatal("alice is not online after registering")
	}
	if code, err := c.register("sip:bob@conclave.test", 600); code != 403 {
		t.Fatalf("alice registering as bob: %d %v", code, err)
	}
	if f.edge.Online("sip:bob@conclave.test") {
		t.Fatal("bob is online through alice's certificate")
	}
	recs := f.audited(t, ActionRegisterRefused)
	if len(recs) != 1 || recs[0].Target != "sip:bob@conclave.test" || recs[0].Actor != "alice" {
		t.Fatalf("audit of the refused registration: %+v", recs)
	}
	if code, _ := c.register("sip:alice@conclave.test", 0); code != 200 || f.edge.Online("sip:alice@conclave.test") {
		t.Fatalf("unregistering: %d, online %v", code, f.edge.Online("sip:alice@conclave.test"))
	}
}

func TestRevokedCertificateIsRefusedAtTheNextRegistrationAndHandshake(t *testing.T) {
	f := newFixture(t)
	cert, iss := device(t, f.ca, f.st, "alice")
	c, err := f.dial(t, &cert)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.register("sip:alice@conclave.test", 600); code != 200 {
		t.Fatalf("register: %d %v", code, err)
	}
	// Revoked where this edge hears nothing of it (another node, or the
	// store restored): the next registration still checks.
	if _, err := f.st.RevokeDeviceCert(context.Background(), devca.SerialString(iss.Cert.SerialNumber), f.clk.Now(), devca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if code, err := c.register("sip:alice@conclave.test", 600); code != 403 {
		t.Fatalf("registration with a revoked certificate: %d %v", code, err)
	}
	if f.edge.Online("sip:alice@conclave.test") {
		t.Error("the revoked device's binding survived")
	}
	if _, err := c.readStatus(); err == nil {
		t.Error("the connection of a revoked certificate stayed open")
	}
	if _, err := f.dial(t, &cert); err == nil {
		t.Fatal("a revoked certificate completed a handshake")
	}
	refused := f.auditedN(t, ActionTLSRefused, 1)
	if len(refused) != 1 || !strings.Contains(refused[0].Details["reason"], "revoked") {
		t.Fatalf("audit of the refused handshake: %+v", refused)
	}
}

func TestRevocationDisconnectsTheDeviceAtOnce(t *testing.T) {
	f := newFixture(t)
	cert, iss := device(t, f.ca, f.st, "alice")
	c, err := f.dial(t, &cert)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.register("sip:alice@conclave.test", 600); code != 200 {
		t.Fatalf("register: %d %v", code, err)
	}
	if _, err := f.ca.Revoke(context.Background(), devca.SerialString(iss.Cert.SerialNumber), devca.ReasonKeyCompromise, "admin", ""); err != nil {
		t.Fatal(err)
	}
	// The revocation closes the connection: the read ends at once.
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.r.ReadByte()
	var ne interface{ Timeout() bool }
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was not closed by the revocation: %v", err)
	}
	if f.edge.Online("sip:alice@conclave.test") {
		t.Error("the revoked device is still registered")
	}
	if len(f.auditedN(t, ActionRevokedDropped, 1)) != 1 {
		t.Error("the disconnection is not audited")
	}
}

func TestForeignAndMissingCertificatesAreRefusedAndCountAsBreakIns(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	foreign, _ := device(t, other.ca, other.st, "alice")
	if _, err := f.dial(t, &foreign); err == nil {
		t.Fatal("a certificate from another CA completed a handshake")
	}
	recs := f.auditedN(t, ActionTLSRefused, 1)
	if len(recs) != 1 || !strings.Contains(recs[0].Details["reason"], "not issued by this organisation") {
		t.Fatalf("audit of the foreign certificate: %+v", recs)
	}
	if _, err := f.dial(t, nil); err == nil {
		t.Fatal("a client without a certificate completed a handshake")
	}
	// Scanning goes on: past 20 failures the address is quarantined and
	// even a valid device from it is turned away before TLS.
	for range 19 {
		f.dial(t, nil)
	}
	f.auditedN(t, ActionTLSRefused, 21)
	if a := f.guard.Active(); len(a) != 1 || a[0].Kind != guard.AddressQuarantined {
		t.Fatalf("alarms after 21 refused handshakes: %+v", a)
	}
	good, _ := device(t, f.ca, f.st, "alice")
	if _, err := f.dial(t, &good); err == nil {
		t.Fatal("a quarantined address completed a handshake")
	}
	f.clk.Advance(11 * time.Minute)
	if _, err := f.dial(t, &good); err != nil {
		t.Fatalf("the quarantine did not end: %v", err)
	}
}

func TestDigestIsASecondFactorBoundToTheCertificate(t *testing.T) {
	f := newFixture(t)
	f.edge.cfg.Digest = "SHA-256"
	cert, iss := device(t, f.ca, f.st, "alice")
	bobCert, bobIss := device(t, f.ca, f.st, "bob")
	c, err := f.dial(t, &cert)
	if err != nil {
		t.Fatal(err)
	}
	// Without credentials: a challenge.
	code, chals, err := c.registerAuth("sip:alice@conclave.test", "")
	if code != 401 || len(chals) != 1 || !strings.Contains(chals[0], "SHA-256") {
		t.Fatalf("no credentials: %d %v %v", code, chals, err)
	}
	answer := func(chal, user, password string) string {
		ch, err := digest.ParseChallenge(chal)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := digest.Digest(ch, digest.Options{Method: "REGISTER", URI: "sip:conclave.test", Username: user, Password: password})
		if err != nil {
			t.Fatal(err)
		}
		return cr.String()
	}
	// Bob's secret with Alice's certificate, and a wrong secret: refused.
	if code, _, _ := c.registerAuth("sip:alice@conclave.test", answer(chals[0], "bob", bobIss.DigestPassword)); code != 403 {
		t.Fatalf("bob's secret on alice's certificate: %d", code)
	}
	if code, _, _ := c.registerAuth("sip:alice@conclave.test", answer(chals[0], "alice", "wrong")); code != 403 {
		t.Fatalf("a wrong secret: %d", code)
	}
	if n := len(f.audited(t, ActionDigestFailed)); n != 2 {
		t.Fatalf("%d digest failures audited", n)
	}
	f.guard.Sweep()
	if code, _, err := c.registerAuth("sip:alice@conclave.test", answer(chals[0], "alice", iss.DigestPassword)); code != 200 {
		t.Fatalf("the right secret: %d %v", code, err)
	}
	// An MD5 answer to a SHA-256 challenge is refused (no downgrade).
	md5chal := strings.Replace(chals[0], "SHA-256", "MD5", 1)
	if code, _, _ := c.registerAuth("sip:alice@conclave.test", answer(md5chal, "alice", iss.DigestPassword)); code != 403 {
		t.Fatalf("an MD5 answer to a SHA-256 challenge: %d", code)
	}
	// A nonce outlives nothing: five minutes later it is stale.
	f.clk.Advance(6 * time.Minute)
	if code, chals2, _ := c.registerAuth("sip:alice@conclave.test", answer(chals[0], "alice", iss.DigestPassword)); code != 401 ||
		!strings.Contains(chals2[0], "stale=true") {
		t.Fatalf("an old nonce: %d %v", code, chals2)
	}
	_ = bobCert
}

// invite sends an INVITE from aor to target with a DTLS-SRTP offer and
// returns the final status and the Warning header.
func (s *sipConn) invite(aor, target string) (int, string, error) {
	s.cseq++
	local := s.c.LocalAddr().String()
	user := strings.TrimPrefix(strings.Split(aor, "@")[0], "sip:")
	body := strings.ReplaceAll(dtlsOffer, "192.0.2.10", "127.0.0.1")
	msg := fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bKi%d\r\nMax-Forwards: 70\r\n"+
		"From: <%s>;tag=f%d\r\nTo: <%s>\r\nCall-ID: inv-%d\r\nCSeq: 1 INVITE\r\nContact: <sip:%s@%s;transport=tls>\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		target, local, s.cseq, aor, s.cseq, target, s.cseq, user, local, len(body), body)
	if _, err := io.WriteString(s.c, msg); err != nil {
		return 0, "", err
	}
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer s.c.SetReadDeadline(time.Time{})
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		if !strings.HasPrefix(line, "SIP/2.0 ") {
			continue
		}
		code, _ := strconv.Atoi(strings.Fields(line)[1])
		warning, n := "", 0
		for {
			h, _ := s.r.ReadString('\n')
			h = strings.TrimSpace(h)
			if h == "" {
				break
			}
			k, v, _ := strings.Cut(h, ":")
			switch strings.ToLower(k) {
			case "warning":
				warning = v
			case "content-length":
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		io.CopyN(io.Discard, s.r, int64(n))
		if code >= 200 {
			return code, warning, nil
		}
	}
}

func TestCallsToUnreachableAddressesSayWhy(t *testing.T) {
	f := newFixture(t)
	if _, err := f.st.CreateRoom(context.Background(), store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessOpen}); err != nil {
		t.Fatal(err)
	}
	cert, _ := device(t, f.ca, f.st, "alice")
	c, err := f.dial(t, &cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target string
		code   int
		says   string
	}{
		{"sip:bob@conclave.test", 480, "has no registered device"},
		{"sip:board@conclave.test", 404, "dialling into meetings is not available"},
		{"sip:nobody@conclave.test", 404, "no account or room"},
		{"sip:bob@elsewhere.example", 403, "routes calls to conclave.test only"},
	} {
		code, warning, err := c.invite("sip:alice@conclave.test", tc.target)
		if err != nil || code != tc.code || !strings.Contains(warning, tc.says) {
			t.Errorf("call to %s: %d %q %v", tc.target, code, warning, err)
		}
	}
	// A From that is not the certificate's address is refused and counted.
	if code, _, _ := c.invite("sip:bob@conclave.test", "sip:alice@conclave.test"); code != 403 {
		t.Errorf("calling as bob with alice's certificate: %d", code)
	}
}

// A PIN dialled in the address (sip:board*246810@...) is a secret: the
// refusal names the room, and the audit trail holds the address without
// the PIN.
func TestAPINInTheDialledAddressStaysOutOfTheAudit(t *testing.T) {
	f := newFixture(t)
	if _, err := f.st.CreateRoom(context.Background(), store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessOpen}); err != nil {
		t.Fatal(err)
	}
	cert, _ := device(t, f.ca, f.st, "alice")
	c, err := f.dial(t, &cert)
	if err != nil {
		t.Fatal(err)
	}
	// This edge has no meetings to join (no Deps.Meetings): it refuses,
	// naming the room it understood.
	code, warning, err := c.invite("sip:alice@conclave.test", "sip:board*246810@conclave.test")
	if err != nil || code != 404 || !strings.Contains(warning, "join board from a browser") || strings.Contains(warning, "246810") {
		t.Errorf("call to board with its PIN: %d %q %v", code, warning, err)
	}
	refused := f.auditedN(t, ActionCallRefused, 1)
	if refused[0].Target != "sip:board@conclave.test" {
		t.Errorf("the refusal's audit target is %q, want the room's address without the PIN", refused[0].Target)
	}
	leaked, err := f.audit.List(context.Background(), store.AuditFilter{Text: "246810"})
	if err != nil {
		t.Fatal(err)
	}
	if len(leaked) != 0 {
		t.Errorf("the PIN is in the audit trail: %+v", leaked)
	}
}
