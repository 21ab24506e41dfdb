// Package secure proves the end-to-end encryption claims of docs/e2ee.md
// with native participants (internal/client with internal/client/secure)
// and a real server on loopback: what the SFU forwards cannot be decoded,
// identical frames differ on the wire, a participant who left cannot read
// what follows and a late joiner what came before, and a malicious relay
// that substitutes keys, injects participants, drops or replays key
// messages is detected or fails.
package secure

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/pki"
	"conclave/internal/ra"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

// testServer is a complete node on loopback.
type testServer struct {
	*server.Server
	roots   *x509.CertPool
	dataDir string
}

// orgName names the test organisation.
const orgName = "Conclave Test Org"

// startServer runs a node with the given rooms; log (may be nil) gets its
// logs at debug level.
func startServer(t *testing.T, opts server.Options, log io.Writer, rooms ...string) *testServer {
	t.Helper()
	var logger *slog.Logger
	if log != nil {
		logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ts := testserver.Start(t, testserver.Options{Server: opts, Logger: logger, OrgName: orgName}, rooms...)
	return &testServer{Server: ts.Server, roots: ts.Roots, dataDir: ts.DataDir()}
}

// httpClient talks to the server's API with a cookie jar.
func (s *testServer) httpClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(s.roots)}}
}

// identity is a device with, for an account, its credential.
type identity struct {
	device     *ecdsa.PrivateKey
	credential []byte
	userID     string
	account    string
}

// certify makes an account and has a new device certified for it through
// the API, as `conclave join --user` does.
func (s *testServer) certify(t *testing.T, username string) identity {
	t.Helper()
	ctx := context.Background()
	const password = "Correct-Horse-Battery-42"
	hash, err := auth.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store().CreateUser(ctx, store.User{Username: username, DisplayName: strings.ToUpper(username[:1]) + username[1:],
		PasswordHash: hash, Role: store.RoleUser, Enabled: true, PasswordChangedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	device, _ := e2ee.GenerateDeviceKey()
	hc := s.httpClient()
	csrf, err := secure.Login(ctx, hc, s.URL(), username, password)
	if err != nil {
		t.Fatal(err)
	}
	cred, _, err := secure.RequestCredential(ctx, hc, s.URL(), csrf, device, orgName, username)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e2ee.ParseCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	return identity{device: device, credential: cred, userID: c.UserID}
}

// issue makes an account and a device credential for it straight from
// the server's RA (certify goes through the API, but its password hashing
// takes seconds under the race detector).
func (s *testServer) issue(t *testing.T, username string) identity {
	t.Helper()
	u, err := s.Store().CreateUser(context.Background(), store.User{Username: username, DisplayName: username,
		Role: store.RoleUser, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	device, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&device.PublicKey)
	cred, _, err := s.Authority().Certify(context.Background(), u, pub)
	if err != nil {
		t.Fatal(err)
	}
	return identity{device: device, credential: cred, userID: ra.UserID(u)}
}

// org returns the organisation key as a client pins it.
func (s *testServer) org(t *testing.T) (*ecdsa.PublicKey, string) {
	t.Helper()
	org := s.orgInfo(t)
	k, err := org.Key()
	if err != nil {
		t.Fatal(err)
	}
	return k, org.Name
}

func (s *testServer) orgInfo(t *testing.T) secure.Org {
	t.Helper()
	hc := s.httpClient()
	defer hc.CloseIdleConnections()
	org, err := secure.FetchOrg(context.Background(), hc, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	return org
}

// monitor makes a log monitor of the server's identity log for a device
// (userID "" for a guest), through api (nil: the server's own API).
func (s *testServer) monitor(t *testing.T, id identity, api secure.LogAPI) *secure.LogMonitor {
	t.Helper()
	org := s.orgInfo(t)
	k, _ := org.Key()
	if api == nil {
		api = secure.HTTPLog{Client: s.httpClient(), Base: s.URL()}
	}
	m, err := secure.NewLogMonitor(secure.LogMonitorConfig{API: api, VerifierKey: org.LogKey, OrgKey: k, OrgID: org.ID,
		UserID: id.userID, Device: &id.device.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// member is a native participant with E2EE, and what the test saw of it.
type member struct {
	*client.Session
	sec  *secure.Session
	log  *secure.LogMonitor // nil without a log
	name string
	dir  string // recordings

	mu      sync.Mutex
	keys    []secure.KeyEvent
	notices []secure.Notice
}

// joinOpts say how a member joins.
type joinOpts struct {
	url        string             // default: the server's URL
	roots      *x509.CertPool     // default: the server's CA
	video      client.FrameSource // published as camera
	audio      client.FrameSource // published as microphone
	record     bool
	id         identity
	orgKey     *ecdsa.PublicKey
	orgName    string
	strict     bool          // RequireCertified
	noLog      bool          // no log monitor: nobody is certified
	logAPI     secure.LogAPI // the log as this member sees it; nil: the server's
	digits     int           // meeting code length (0: 12)
	log        io.Writer     // debug logs of the client and its E2EE; nil: warnings to the test log
	tune       func(*secure.Config)
	dialTimout time.Duration
}

func join(t *testing.T, srv *testServer, room, name string, o joinOpts) *member {
	t.Helper()
	m := &member{name: name, dir: t.TempDir()}
	base := o.url
	if base == "" {
		base = srv.URL()
	}
	roots := o.roots
	if roots == nil {
		roots = srv.roots
	}
	var logger *slog.Logger
	if o.log != nil {
		logger = slog.New(slog.NewTextHandler(o.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", name)
	} else {
		logger = testlog.Logger(t, slog.LevelError).With("who", name)
	}
	if o.id.device == nil {
		o.id.device, _ = e2ee.GenerateDeviceKey()
	}
	cfg := secure.Config{
		Device: o.id.device, Credential: o.id.credential, UserID: o.id.userID, Name: name,
		OrgKey: o.orgKey, OrgName: o.orgName, RequireCertified: o.strict, Logger: logger,
		OnNotice: func(n secure.Notice) {
			m.mu.Lock()
			m.notices = append(m.notices, n)
			m.mu.Unlock()
		},
		Observer: func(e secure.KeyEvent) {
			m.mu.Lock()
			m.keys = append(m.keys, e)
			m.mu.Unlock()
		},
	}
	stopLog := func() {}
	if o.orgKey != nil && !o.noLog {
		hc := srv.httpClient()
		api := o.logAPI
		if api == nil {
			api = secure.HTTPLog{Client: hc, Base: srv.URL()}
		}
		cfg.Log = srv.monitor(t, o.id, api)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		done := make(chan struct{})
		go func() {
			defer close(done)
			cfg.Log.Run(ctx, time.Second, nil)
		}()
		stopLog = func() {
			cancel()
			<-done
			hc.CloseIdleConnections()
		}
	}
	cfg.CodeDigits = o.digits
	if o.tune != nil {
		o.tune(&cfg)
	}
	sec, err := secure.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := client.Options{URL: base + "/r/" + room, Name: name, RootCAs: roots, Logger: logger,
		Camera: o.video, Microphone: o.audio}
	if o.record {
		opts.NewSink = client.Recorder(m.dir)
	}
	sec.Wire(&opts)
	timeout := o.dialTimout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	m.Session, m.sec = s, sec
	m.log = cfg.Log
	t.Cleanup(func() { s.Leave() })
	go func() {
		<-s.Done()
		stopLog()
	}()
	return m
}

// keyEvents returns the key events of a kind seen so far.
func (m *member) keyEvents(kind secure.KeyEventKind) []secure.KeyEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []secure.KeyEvent
	for _, e := range m.keys {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// warnings returns the warnings shown so far.
func (m *member) warnings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.notices {
		if n.Kind == secure.Warning {
			out = append(out, n.Text)
		}
	}
	return out
}

func (m *member) warned(sub string) bool {
	for _, w := range m.warnings() {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// e2eeStats returns what m counted for participant id.
func (m *member) e2eeStats(id string) secure.Stats {
	for _, st := range m.sec.Stats() {
		if st.Participant == id {
			return st
		}
	}
	return secure.Stats{Participant: id}
}

// verified reports whether m lists id as end-to-end verified.
func (m *member) verified(id string) bool {
	p, ok := m.sec.Participant(id)
	return ok && p.Verified
}

// codesApart reports whether two members show no common meeting code: a
// code is "" while its round is incomplete ("verifying").
func codesApart(a, b *member) bool {
	ca, cb := a.sec.MeetingCode(), b.sec.MeetingCode()
	return ca == "" || cb == "" || ca != cb
}

// waitVerified waits until every member lists every other as verified,
// with one meeting code.
func waitVerified(t *testing.T, ms ...*member) {
	t.Helper()
	wait.For(t, "everyone verified with one meeting code", 15*time.Second, func() bool {
		code := ms[0].sec.MeetingCode()
		for _, a := range ms {
			if a.sec.MeetingCode() != code || code == "" || len(a.sec.Participants()) != len(ms) {
				return false
			}
			for _, b := range ms {
				if a != b && !a.verified(b.Self().ID) {
					return false
				}
			}
		}
		return true
	})
}

// waitDecrypted waits until at receives n more decrypted frames from id.
func waitDecrypted(t *testing.T, at *member, from *member, n uint64) {
	t.Helper()
	id := from.Self().ID
	want := at.e2eeStats(id).Decrypted + n
	wait.For(t, at.name+" to decrypt frames of "+from.name, 15*time.Second, func() bool {
		return at.e2eeStats(id).Decrypted >= want
	})
}

// syncBuffer is a log buffer written by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
