// Package sipedge is Conclave's SIP edge (docs/sip.md): a registrar and a
// back-to-back user agent over TLS only, on github.com/emiago/sipgo.
//
// Every connection is mutually authenticated: the device presents a
// certificate from the device registration authority (internal/devca),
// checked at the handshake and again at every REGISTER and INVITE, and
// the certificate's address of record must be the one the request speaks
// for. A revocation closes the device's connections at once.
//
// Calls between registered users are bridged by the edge, which relays
// the media without being able to read it: DTLS-SRTP is required (the
// keys are agreed between the endpoints), SDES-SRTP only when the
// administrator allows it (then the call is marked "not end-to-end"), and
// plain RTP never. Every call leaves an encrypted call detail record.
package sipedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"golang.org/x/time/rate"

	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/conn"
	"conclave/internal/devca"
	"conclave/internal/dialin"
	"conclave/internal/guard"
	"conclave/internal/pki"
	"conclave/internal/store"
)

// Audit actions of the SIP edge.
const (
	ActionTLSRefused      = "sip-tls-refused"
	ActionRegistered      = "sip-registered"
	ActionRegisterRefused = "sip-register-refused"
	ActionCallRefused     = "sip-call-refused"
	ActionRevokedDropped  = "sip-revoked-disconnected"
)

// Config is the SIP edge's configuration.
type Config struct {
	// Listen is the TCP address of SIP over TLS (":5061").
	Listen string
	// Domain is the SIP domain: addresses of record are sip:<user>@Domain.
	Domain string
	// Host is the name or address this edge puts in Via and Contact.
	Host string
	// RelayIP is the address media relay sockets bind to and advertise.
	RelayIP netip.Addr
	// RelayPorts is the UDP range of relay sockets; zero means ephemeral.
	RelayPorts PortRange
	// AllowSDES lets calls use SDES-SRTP, marked not end-to-end.
	AllowSDES bool
	// Digest, "SHA-256" or "MD5", asks every REGISTER and INVITE for the
	// device's digest secret as a second factor with that algorithm
	// (digest.go); empty asks for none.
	Digest string
	// Certificate is the edge's TLS server certificate.
	Certificate tls.Certificate
	// MinExpires and MaxExpires bound registrations (defaults 60 s, 3600 s).
	MinExpires, MaxExpires time.Duration
	// RequestRate and RequestBurst limit the requests of one address
	// (defaults 20/s, burst 60).
	RequestRate  float64
	RequestBurst int
	// HandshakeTimeout bounds a TLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// MaxConnections bounds the open connections (default 10000).
	MaxConnections int
	// Tap sees relayed media (tests only).
	Tap    Tap
	Clock  clock.Clock
	Logger *slog.Logger
}

// Directory tells accounts and rooms apart for the answer to a call for
// an address nobody has registered; store.Store is one.
type Directory interface {
	UserByName(ctx context.Context, username string) (store.User, error)
	RoomByAlias(ctx context.Context, alias string) (store.Room, error)
}

// Deps are the parts of the server the edge uses.
type Deps struct {
	CA    *devca.Authority
	Guard *guard.Guard
	Audit audit.Recorder
	CDRs  *CDRLog
	// Directory is optional: without it every unregistered address is
	// answered 480.
	Directory Directory
	// Meetings and Media let devices dial into meetings (dialin.go):
	// the node's meeting manager and its media core. Without them a
	// room's address is answered 404.
	Meetings dialin.Meetings
	Media    conn.LocalEngine
}

// Edge is a running SIP edge.
type Edge struct {
	cfg   Config
	deps  Deps
	clock clock.Clock
	log   *slog.Logger

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	ln     *authListener

	reg   *registrar
	calls *callTable

	nonceKey nonceKey

	limMu    sync.Mutex
	limiters map[netip.Addr]*rate.Limiter

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// New prepares an edge; Start listens.
func New(cfg Config, deps Deps) (*Edge, error) {
	if cfg.Domain == "" || cfg.Host == "" || !cfg.RelayIP.IsValid() {
		return nil, errors.New("SIP edge: the domain, host and relay address must be set")
	}
	if deps.CA == nil || deps.Guard == nil || deps.CDRs == nil {
		return nil, errors.New("SIP edge: the device CA, break-in guard and call records are required")
	}
	if cfg.MinExpires <= 0 {
		cfg.MinExpires = 60 * time.Second
	}
	if cfg.MaxExpires <= 0 {
		cfg.MaxExpires = time.Hour
	}
	if cfg.RequestRate <= 0 {
		cfg.RequestRate = 20
	}
	if cfg.RequestBurst <= 0 {
		cfg.RequestBurst = 60
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 10000
	}
	if deps.Audit == nil {
		deps.Audit = audit.Discard{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Edge{cfg: cfg, deps: deps, clock: clock.Or(cfg.Clock), log: log.With("part", "sip"),
		limiters: map[netip.Addr]*rate.Limiter{}, done: make(chan struct{}), nonceKey: newNonceKey()}
	e.reg = newRegistrar(e)
	e.calls = newCallTable()
	return e, nil
}

// Start listens on cfg.Listen and serves in the background.
func (e *Edge) Start() error {
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("Conclave"), sipgo.WithUserAgentHostname(e.cfg.Host),
		sipgo.WithUserAgenTLSConfig(pki.ClientTLSConfig(nil)))
	if err != nil {
		return fmt.Errorf("SIP user agent: %w", err)
	}
	e.ua = ua
	e.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(e.log))
	if err != nil {
		return err
	}
	e.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(e.cfg.Host), sipgo.WithClientLogger(e.log))
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", e.cfg.Listen)
	if err != nil {
		return fmt.Errorf("SIP over TLS: listen on %s: %w", e.cfg.Listen, err)
	}
	e.ln = newAuthListener(e, tcp)
	e.srv.OnRegister(e.guarded(e.reg.handle))
	e.srv.OnInvite(e.guarded(e.handleInvite))
	e.srv.OnAck(e.handleAck)
	e.srv.OnBye(e.guarded(e.handleBye))
	e.srv.OnCancel(e.handleCancel)
	e.srv.OnOptions(e.guarded(e.handleOptions))
	e.srv.OnNoRoute(e.guarded(func(req *sip.Request, tx sip.ServerTransaction, _ *devca.Identity) {
		e.respond(tx, req, sip.StatusMethodNotAllowed, "Method Not Allowed",
			sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER"))
	}))
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.deps.CA.OnRevoke(e.revoked)
	stopSweep := clock.Every(e.clock, 10*time.Second, e.reg.sweep)
	go func() {
		defer close(e.done)
		defer stopSweep()
		if err := e.srv.ServeTLS(e.ln); err != nil && !errors.Is(err, net.ErrClosed) {
			e.log.Error("SIP edge stopped", "err", err)
		}
	}()
	e.log.Info("SIP over TLS listening", "addr", e.ln.Addr().String(), "domain", e.cfg.Domain, "sdes", e.cfg.AllowSDES)
	return nil
}

// Addr is the TLS listener's address.
func (e *Edge) Addr() net.Addr { return e.ln.Addr() }

// Close stops the edge, ending calls and closing connections.
func (e *Edge) Close() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	e.calls.closeAll()
	err := e.ln.Close()
	e.ln.closeAll()
	<-e.done
	e.ua.Close()
	return err
}

// handler is a request handler that knows the verified device.
type handler func(req *sip.Request, tx sip.ServerTransaction, id *devca.Identity)

// guarded applies the rate limit and finds the identity of the connection
// a request came on.
func (e *Edge) guarded(h handler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		c := e.ln.conn(req.Source())
		if c == nil {
			// Only requests over authenticated TLS connections reach here.
			e.respond(tx, req, sip.StatusForbidden, "Forbidden")
			return
		}
		if !e.allow(c.addr.Addr()) {
			e.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable", sip.NewHeader("Retry-After", "10"))
			return
		}
		id := c.identity
		h(req, tx, &id)
	}
}

// allow applies the per-address request rate.
func (e *Edge) allow(a netip.Addr) bool {
	e.limMu.Lock()
	defer e.limMu.Unlock()
	l := e.limiters[a]
	if l == nil {
		if len(e.limiters) > 10000 {
			clear(e.limiters)
		}
		l = rate.NewLimiter(rate.Limit(e.cfg.RequestRate), e.cfg.RequestBurst)
		e.limiters[a] = l
	}
	return l.AllowN(e.clock.Now(), 1)
}

// reverify checks the device's certificate again (revocation, account
// state) for a request that needs it.
func (e *Edge) reverify(c *authConn) (devca.Identity, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	return e.deps.CA.Verify(ctx, c.chain)
}

// fail counts a failure against an address in the break-in guard and
// audits it.
func (e *Edge) fail(addr netip.Addr, action, actor, target, reason string) {
	e.deps.Guard.Fail(addr, "", guard.UnknownRoom)
	e.record(audit.Event{Actor: actor, Source: addr.String(), Action: action, Target: target,
		Outcome: audit.OutcomeFailure, Details: map[string]string{"reason": reason}})
}

func (e *Edge) record(ev audit.Event) {
	if err := e.deps.Audit.Record(context.Background(), ev); err != nil {
		e.log.Error("audit record failed", "action", ev.Action, "err", err)
	}
}

func (e *Edge) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		e.log.Debug("SIP respond", "code", code, "err", err)
	}
}

// revoked closes the connections of a revoked certificate and forgets its
// registrations; calls on them end.
func (e *Edge) revoked(serial string) {
	n := e.ln.closeSerial(serial)
	e.reg.dropSerial(serial)
	e.calls.endSerial(serial)
	if n > 0 {
		e.record(audit.Event{Action: ActionRevokedDropped, Outcome: audit.OutcomeInfo,
			Details: map[string]string{"serial": serial, "connections": strconv.Itoa(n)}})
	}
}

func (e *Edge) handleOptions(req *sip.Request, tx sip.ServerTransaction, _ *devca.Identity) {
	e.respond(tx, req, sip.StatusOK, "OK", sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER"))
}

// addrOf parses a host:port source address.
func addrOf(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// params builds header parameters of one key.
func params(k, v string) sip.HeaderParams {
	p := sip.NewParams()
	p.Add(k, v)
	return p
}
