// Package server assembles a complete Conclave node from its parts — store,
// certificates, SFU, meetings and web front end — on the embedded default
// configuration. `conclave serve` and the end-to-end tests both use it.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/pion/transport/v5"

	"conclave/internal/access"
	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/authn"
	"conclave/internal/clock"
	"conclave/internal/clocksync"
	"conclave/internal/config"
	"conclave/internal/conn"
	"conclave/internal/devca"
	"conclave/internal/e2ee"
	"conclave/internal/files"
	"conclave/internal/guard"
	"conclave/internal/meeting"
	"conclave/internal/metrics"
	"conclave/internal/nodeca"
	"conclave/internal/nodeconf"
	"conclave/internal/pki"
	"conclave/internal/ra"
	"conclave/internal/secrets"
	"conclave/internal/sfu"
	"conclave/internal/sipedge"
	"conclave/internal/store"
	"conclave/internal/turn"
	"conclave/internal/web"
	webassets "conclave/web"
)

// Server is a running all-in-one Conclave node.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	store    *store.DB
	tls      *pki.Material
	engine   *sfu.Engine
	meetings *meeting.Manager
	enroller *auth.Enroller
	// authority is the E2EE registration authority and log.
	authority *ra.Authority
	guard     *guard.Guard
	hashing   *auth.HashBudget
	accounts  *auth.Accounts
	auditAgg  *audit.Aggregator
	clock     clock.Clock
	files     *files.Store
	audit     *audit.Log
	http      *http.Server
	listener  net.Listener
	https     *httpsPort // the HTTPS port, shared with TURN over TLS, and TURN
	// adminHTTP serves the management listener (--admin-listen); nil
	// without it.
	adminHTTP     *http.Server
	adminListener net.Listener
	adminURL      string
	adminServed   chan error
	lifecycle     *auth.Lifecycle
	debug         *debugServer // nil unless --debug-listen
	ops           *ops         // the operator's parts (ops.go)
	fields        *secrets.Fields
	started       time.Time
	closeOnce     sync.Once
	closeErr      error
	sip           *sipedge.Edge    // nil unless --sip-listen
	clusterCA     *nodeca.CA       // nil unless --cluster-listen
	cluster       *nodeca.Listener // nil unless --cluster-listen
	cl            *cluster         // nil unless --cluster-listen (cluster.go)
	sipCA         *devca.Authority // nil unless --sip-listen
	url           string
	org           nodeconf.Org // the organisation's E2EE key, for the nodes
	opts          Options
	ctx           context.Context
	cancel        context.CancelFunc
	served        chan error
}

// Options adjust a server for tests; the zero value is production.
type Options struct {
	// Assets replaces the embedded web client.
	Assets fs.FS
	// ResumeWindow overrides the meeting resume window.
	ResumeWindow time.Duration
	// Tap sees every media packet the SFU forwards (tests only).
	Tap sfu.Tap
	// RelayTap sees every RTP packet other nodes relay to this one
	// (tests only).
	RelayTap func(from string, t conn.RelayedTrack, raw []byte)
	// SIPTap sees every datagram the SIP media relay forwards (tests only).
	SIPTap sipedge.Tap
	// ListenRelay opens the TURN server's relay sockets (nil is
	// net.ListenUDP), and MediaNet lists the interfaces whose addresses
	// the SFU announces (nil is the system's). A test that runs the node
	// inside a network namespace (internal/testutil/netns) gives both of
	// that namespace.
	ListenRelay func(network string, laddr *net.UDPAddr) (*net.UDPConn, error)
	MediaNet    transport.Net
	// Clock replaces the system clock for the node's time-based rules:
	// break-in blocks, sessions, enrolment and credential expiry, audit
	// times, files' lifetime, the meetings' timers (resume window,
	// waiting for a host, grace after the last host), the daily backup,
	// the self-check and the certificate and clock checks. The media path
	// keeps the system clock.
	Clock clock.Clock
	// FreeSpace replaces statfs(2) for the disk alarm.
	FreeSpace func(path string) (free, total uint64, err error)
	// ClockSync replaces adjtimex(2) for the clock alarm.
	ClockSync clocksync.Reader
	// Binary is the executable the self-check hashes; empty means this
	// process's, "-" none.
	Binary string
	// BodyTimeout overrides how long a request body may take to arrive
	// (web.DefaultBodyTimeout).
	BodyTimeout time.Duration
}

// Open prepares a node: data directory, database, certificates, media
// sockets. It does not accept connections until Start.
func Open(cfg config.Config, log *slog.Logger, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	clk := clock.Or(opts.Clock)
	s := &Server{cfg: cfg, log: log, clock: clk, started: clk.Now().UTC(), opts: opts}
	ok := false
	defer func() {
		if !ok {
			s.closeParts()
		}
	}()

	o, err := openOpsEarly(cfg, log, opts)
	if err != nil {
		return nil, err
	}
	s.ops = o
	st, err := store.Open(cfg.StoreName())
	if err != nil {
		return nil, err
	}
	s.store = st

	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.url = publicURL(cfg, s.listener.Addr())

	s.tls, err = pki.Ensure(pki.Options{Dir: cfg.DataDir, Hosts: cfg.Hosts,
		CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CRLURL: s.url + web.CRLPath, Box: o.box})
	if err != nil {
		return nil, fmt.Errorf("prepare TLS certificates: %w", err)
	}
	served, err := o.tlsMaterial(s.tls)
	if err != nil {
		return nil, fmt.Errorf("load this node's certificate: %w", err)
	}
	o.certs = pki.NewHolder(served)
	for _, n := range s.tls.Notices {
		log.Warn("TLS: " + n)
	}

	s.engine, err = sfu.NewEngine(sfu.Config{
		UDPAddr:         cfg.MediaUDP,
		TCPAddr:         cfg.MediaTCP,
		PublicIPs:       cfg.PublicIPs,
		IncludeLoopback: true,
		Net:             opts.MediaNet,
		Logger:          log,
		Tap:             opts.Tap,
	})
	if err != nil {
		return nil, err
	}
	if s.audit, err = o.openAudit(st); err != nil {
		return nil, err
	}
	// Repeated refusals and failed sign-ins are written once a minute with
	// their count, so that nobody can flood the log (docs/hardening.md).
	s.auditAgg = audit.NewAggregator(s.audit, clk, 0)
	s.hashing = auth.NewHashBudget(cfg.HashMemory)
	allow, err := guard.ParseAllow(cfg.AllowList)
	if err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	gcfg := guard.DefaultConfig()
	gcfg.Allow = allow
	s.guard, err = guard.New(gcfg, clk, alarmEvents{log: log, audit: s.audit, alarms: o.alarms})
	if err != nil {
		return nil, fmt.Errorf("break-in guard: %w", err)
	}
	gate, err := access.New(st, s.guard, s.auditAgg, s.hashing, log)
	if err != nil {
		return nil, err
	}
	// The HTTPS port, limited per client address, carries TURN over TLS
	// too.
	s.https = newHTTPSPort(newLimitListener(s.listener, s.maxConns(), s.guard, s.log), cfg, log)
	if err := s.https.openTURN(cfg, s.url, s.engine, clk, opts.ListenRelay, log); err != nil {
		return nil, err
	}
	s.meetings = meeting.NewManager(meeting.Config{ResumeWindow: opts.ResumeWindow, Logger: log,
		Clock: clk, MaxParticipants: cfg.MaxParticipants, Audit: hostAuditor{log: log, audit: s.audit},
		Relay: s.https.meetingRelay(), AlwaysRelay: cfg.AlwaysRelay}, s.engine, gate)
	s.enroller = auth.NewEnroller(st, clk, auth.EnrolConfig{})
	org := cfg.OrgName
	if org == "" {
		org = s.url0()
	}
	authority, err := ra.OpenSealed(cfg.DataDir, org, org, st, clk, o.box)
	if err != nil {
		return nil, err
	}
	s.org = nodeconf.Org{ID: authority.OrgID(), Name: authority.Name(), PublicKey: authority.PublicKey(),
		LogKey: authority.LogVerifierKey()}
	authority.Watch(func(r *e2ee.Revocation) {
		pub, _ := e2ee.MarshalPublicKey(r.DevicePublicKey)
		if n := s.meetings.RevokeDevice(pub); n > 0 {
			log.Info("revoked device sent away", "user", r.UserID, "participants", n)
		}
	})
	s.authority = authority
	fileStore, err := files.Open(filepath.Join(cfg.DataDir, "files"), files.Config{MaxSize: cfg.MaxFileSize, Clock: clk})
	if err != nil {
		return nil, err
	}
	s.meetings.OnMeetingEnd(fileStore.DeleteMeeting)
	s.files = fileStore
	if cfg.PINMinLength == 0 {
		cfg.PINMinLength = auth.DefaultPINMinLen
	}

	if err := s.openCluster(clk, org, gate); err != nil {
		return nil, err
	}
	if s.cl != nil {
		s.cl.org = s.org
	}
	// The secrets the store keeps (sign-in settings, devices' digest
	// secrets) are sealed by the data directory's fields key.
	if s.fields, err = secrets.OpenFields(cfg.DataDir, o.box); err != nil {
		return nil, err
	}
	telephony, err := s.openSIP(clk, opts)
	if err != nil {
		return nil, fmt.Errorf("SIP: %w", err)
	}

	assets := opts.Assets
	if assets == nil {
		assets = webassets.FS
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.cancel = ctx, cancel
	s.accounts = auth.NewAccounts(st, clk, auth.AccountsConfig{Audit: s.auditAgg})
	roles := auth.NewRoles(st, clk, s.audit)
	s.lifecycle = auth.NewLifecycle(st, clk, s.audit, s.accounts, roles)
	// First the account's meeting connections end with the reason its user
	// is shown ("Your account has been disabled"); then its devices are
	// revoked in the E2EE log, so that every client stops trusting them
	// (docs/e2ee.md, section 7). In the other order the revocation sends
	// the participant away first, as a revoked device, and the user is
	// not told why.
	s.lifecycle.OnDeactivate(s.deactivated)
	s.lifecycle.OnDeactivate(func(ctx context.Context, u store.User, reason string) error {
		n, err := s.authority.RevokeUser(ctx, u, "account "+reason)
		if n > 0 {
			log.Info("devices of a deactivated account revoked", "username", u.Username, "devices", n)
		}
		return err
	})
	settings, err := authSettings(st, s.fields, cfg.Auth)
	if err != nil {
		return nil, err
	}
	plane := web.PlaneAll
	if cfg.Auth.AdminListen != "" {
		plane = web.PlaneMeeting
	}
	var webStore store.Store = st
	if s.cl != nil {
		webStore = configStore{Store: st, changed: s.ConfigChanged}
	}
	webCfg := web.Config{
		Store:        webStore,
		Sessions:     auth.NewSessions(st, clk, auth.SessionConfig{Audit: s.audit}),
		Accounts:     s.accounts,
		Guard:        s.guard,
		Hashing:      s.hashing,
		Roles:        roles,
		Lifecycle:    s.lifecycle,
		AuthSettings: settings,
		SSO:          authn.NewSSO(clk),
		Revocation:   &authn.Revocation{},
		Clock:        clk,
		Plane:        plane,
		BodyTimeout:  opts.BodyTimeout,
		Audit:        s.audit,
		Authority:    authority,
		Files:        fileStore,
		PINMinLength: cfg.PINMinLength,
		Enroller:     s.enroller,
		Meetings:     s.meetings,
		Assets:       assets,
		PublicURL:    s.url,
		Banner:       cfg.Banner,
		CRL:          s.tls.CRL,
		Logger:       log,
		Telephony:    telephony,
		Ops:          opsWeb{s},
		PeerOrigins:  s.peerOrigins,
	}
	if s.cl != nil {
		webCfg.Cluster = clusterAdmin{s}
		webCfg.RemoteFiles = s.cl.mesh
	}
	handler := web.New(ctx, webCfg)
	if err := o.finish(ctx, s); err != nil {
		return nil, err
	}
	if cfg.DebugListen != "" {
		var extra []debugRoute
		if s.cl != nil {
			extra = append(extra, relayCapture(s.cl.mesh))
		}
		if s.debug, err = startDebug(cfg.DebugListen, log, metricsHandler(o.registry), extra...); err != nil {
			return nil, err
		}
	}
	// Every listener serves the certificate of the holder, which a new
	// certificate replaces without a restart (ops.reloadCertificate).
	baseTLS := pki.ServerTLSConfig(s.tls.Certificate)
	baseTLS.Certificates, baseTLS.GetCertificate = nil, o.certs.GetCertificate
	// The HTTPS port also answers TURN clients that name it in ALPN
	// (RFC 7443); TURN over TLS gets the very configuration of HTTPS.
	httpsTLS := listenerTLS(s.https.tlsConfig(baseTLS), settings, plane == web.PlaneAll, nil)
	s.http = s.https.server(o.refuseGuard(handler), httpsTLS, log)
	if cfg.Auth.AdminListen != "" {
		if err := s.openAdmin(ctx, cfg, webCfg, baseTLS, settings, log); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// openAdmin prepares the management listener.
func (s *Server) openAdmin(ctx context.Context, cfg config.Config, webCfg web.Config, baseTLS *tls.Config, settings *authn.Settings, log *slog.Logger) error {
	var clientCA *x509.CertPool
	if cfg.Auth.AdminClientCA != "" {
		b, err := os.ReadFile(cfg.Auth.AdminClientCA)
		if err != nil {
			return fmt.Errorf("--admin-client-ca: %w", err)
		}
		if clientCA, err = pki.CertPool(b); err != nil {
			return fmt.Errorf("--admin-client-ca %s: %w", cfg.Auth.AdminClientCA, err)
		}
	}
	l, err := net.Listen("tcp", cfg.Auth.AdminListen)
	if err != nil {
		return fmt.Errorf("listen on %s (--admin-listen): %w", cfg.Auth.AdminListen, err)
	}
	s.adminListener = l
	s.adminURL = publicURL(config.Config{Hosts: cfg.Hosts}, l.Addr())
	webCfg.Plane = web.PlaneAdmin
	webCfg.PublicURL = s.adminURL
	s.adminHTTP = &http.Server{
		Handler:           s.ops.refuseGuard(web.New(ctx, webCfg)),
		TLSConfig:         listenerTLS(baseTLS, settings, true, clientCA),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return nil
}

// Start accepts connections in the background.
func (s *Server) Start() {
	s.served = make(chan error, 1)
	go s.guard.Run(s.ctx)
	s.ops.start(s.ctx, s)
	go s.auditAgg.Run(s.ctx)
	go s.pruneThrottles(s.ctx, time.Hour)
	stopLog := s.authority.Run(s.ctx, logSyncInterval)
	context.AfterFunc(s.ctx, stopLog)
	if s.cl != nil {
		s.startCluster(s.ctx)
	}
	go s.sweepAccounts(s.ctx, AccountSweep)
	go func() { s.served <- s.https.serve(s.http) }()
	if s.adminHTTP != nil {
		s.adminServed = make(chan error, 1)
		go func() {
			ln := newLimitListener(s.adminListener, s.maxConns(), s.guard, s.log)
			s.adminServed <- s.adminHTTP.Serve(tls.NewListener(ln, s.adminHTTP.TLSConfig))
		}()
	}
}

// Lifecycle manages accounts (create, disable, delete, roles) as the API
// does.
func (s *Server) Lifecycle() *auth.Lifecycle { return s.lifecycle }

// pruneThrottles forgets the sign-in throttle records that no longer
// count anything, every interval until ctx ends, so that attempts at
// made-up usernames do not pile up in the database.
func (s *Server) pruneThrottles(ctx context.Context, interval time.Duration) {
	stop := clock.Every(s.clock, interval, func() {
		if n, err := s.accounts.PruneThrottles(ctx); err != nil {
			s.log.Error("pruning sign-in throttles failed", "err", err)
		} else if n > 0 {
			s.log.Debug("sign-in throttles pruned", "records", n)
		}
	})
	<-ctx.Done()
	stop()
}

// maxConns is the per-address connection limit in force (0: none).
func (s *Server) maxConns() int {
	switch n := s.cfg.MaxConnsPerAddress; {
	case n < 0:
		return 0
	case n == 0:
		return DefaultMaxConnsPerAddress
	default:
		return n
	}
}

// FlushAudit writes the counts of the repeated failures being aggregated
// now, without waiting for their minute to end (shutdown does it too).
func (s *Server) FlushAudit(ctx context.Context) error { return s.auditAgg.Flush(ctx, true) }

// HashStats reads the counts of the Argon2 memory budget.
func (s *Server) HashStats() auth.HashStats { return s.hashing.Stats() }

// DataDir is the node's data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// logSyncInterval is how often the server reads revocations that another
// process (the admin CLI) appended to the E2EE log.
const logSyncInterval = 2 * time.Second

// Authority is the node's E2EE registration authority and log.
func (s *Server) Authority() *ra.Authority { return s.authority }

// URL is the base URL of the web client.
func (s *Server) URL() string { return s.url }

// Store is the node's database.
func (s *Server) Store() store.Store { return s.store }

// TLS is the node's certificate material.
func (s *Server) TLS() *pki.Material { return s.tls }

// DebugAddr is the address of the debug listener (metrics and profiles),
// nil when --debug-listen is not set.
func (s *Server) DebugAddr() net.Addr {
	if s.debug == nil {
		return nil
	}
	return s.debug.Addr()
}

// MediaAddr is the UDP address of the media port.
func (s *Server) MediaAddr() net.Addr { return s.engine.UDPAddr() }

// MediaTCPAddr is the address of the passive ICE-TCP port, nil when
// ICE-TCP is off.
func (s *Server) MediaTCPAddr() net.Addr { return s.engine.TCPAddr() }

// TURN is the embedded TURN server, nil when it is off.
func (s *Server) TURN() *turn.Server { return s.https.relay }

// ForwardDelay reads the histogram of the delay the SFU adds to what it
// forwards (also served as conclave_forward_delay_seconds on the debug
// listener).
func (s *Server) ForwardDelay() metrics.DelayHistogram { return s.engine.ForwardDelay() }

// SendStats reads the SFU's batched-send counters (also served on the
// debug listener).
func (s *Server) SendStats() metrics.SendStats { return s.engine.SendStats() }

// FileBytes is how many bytes of meeting files the node stores now
// (files are deleted when their meeting ends).
func (s *Server) FileBytes() int64 { return s.files.Used() }

// url0 names the organisation when no name is configured: the first
// configured host, or this machine's name.
func (s *Server) url0() string {
	if len(s.cfg.Hosts) > 0 {
		return s.cfg.Hosts[0]
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "conclave"
}

// Alarms returns the break-in alarms currently raised.
func (s *Server) Alarms() []guard.Alarm { return s.guard.Active() }

// AuditEvents returns the audit records of one action (all actions when
// empty), oldest first.
func (s *Server) AuditEvents(ctx context.Context, action string) ([]store.AuditRecord, error) {
	return s.audit.List(ctx, store.AuditFilter{Action: action})
}

// EnrolmentLink returns a one-time link to create the first administrator
// account when none exists yet; the second result is false otherwise.
func (s *Server) EnrolmentLink(ctx context.Context) (string, bool, error) {
	n, err := s.store.CountUsers(ctx, store.RoleAdmin)
	if err != nil {
		return "", false, err
	}
	if n > 0 {
		return "", false, nil
	}
	token, err := s.enroller.Create(ctx, store.RoleAdmin)
	if err != nil {
		return "", false, err
	}
	return s.url + "/enrol#" + token, true, nil
}

// Close stops accepting connections, ends every meeting and releases the
// node's resources.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.meetings.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.cancel()
	err := s.http.Shutdown(ctx)
	if s.adminHTTP != nil {
		err = errors.Join(err, s.adminHTTP.Shutdown(ctx))
		if s.adminServed != nil {
			if serr := <-s.adminServed; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
		} else {
			s.adminListener.Close()
		}
	}
	s.auditAgg.Flush(ctx, true)
	s.ops.stop()
	if s.served != nil {
		if serr := <-s.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	} else {
		s.listener.Close()
	}
	return errors.Join(err, s.closeParts())
}

func (s *Server) closeParts() error {
	var errs []error
	if s.cl != nil {
		s.cl.close()
	}
	if s.cluster != nil {
		errs = append(errs, s.cluster.Close())
	}
	if s.sip != nil {
		errs = append(errs, s.sip.Close())
	}
	if s.debug != nil {
		errs = append(errs, s.debug.Close())
	}
	if s.https != nil {
		errs = append(errs, s.https.Close())
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.https == nil && s.listener != nil {
		errs = append(errs, s.listener.Close())
	}
	if s.cancel == nil && s.adminListener != nil {
		errs = append(errs, s.adminListener.Close())
	}
	return errors.Join(errs...)
}

// publicURL derives the base URL from the configuration: the explicit
// public URL, or the first configured host (else 127.0.0.1 for a loopback
// listener, else this machine's first address) with the listening port.
func publicURL(cfg config.Config, addr net.Addr) string {
	if cfg.PublicURL != "" {
		return cfg.PublicURL
	}
	port := 443
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = ta.Port
	}
	host := ""
	if len(cfg.Hosts) > 0 {
		host = cfg.Hosts[0]
	} else if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		host = ta.IP.String()
	} else {
		host = firstAddress()
	}
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	if port == 443 {
		hp = host
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			hp = "[" + host + "]"
		}
	}
	return "https://" + hp
}

// firstAddress returns a non-loopback address of this machine, so that the
// printed link works from other machines on the LAN, or 127.0.0.1.
func firstAddress() string {
	for _, h := range pki.DefaultHosts() {
		ip := net.ParseIP(h)
		if ip != nil && !ip.IsLoopback() && ip.To4() != nil {
			return h
		}
	}
	return "127.0.0.1"
}

// alarmEvents turns break-in alarms into log lines and audit entries.
type alarmEvents struct {
	log    *slog.Logger
	audit  audit.Recorder
	alarms *alarm.Center
}

func (a alarmEvents) Raised(al guard.Alarm) {
	a.log.Warn("alarm raised", "kind", al.Kind, "subject", al.Subject, "failures", al.Failures, "until", al.Until)
	a.record(al, string(al.Kind), audit.OutcomeFailure)
	a.alarms.Raise(string(al.Kind), al.Subject, alarm.Major, fmt.Sprintf("%d failures within 10 minutes: blocked until %s.",
		al.Failures, al.Until.UTC().Format(time.RFC3339)))
}

func (a alarmEvents) Cleared(al guard.Alarm) {
	a.log.Info("alarm cleared", "kind", al.Kind, "subject", al.Subject)
	a.alarms.Clear(string(al.Kind), al.Subject)
	action := "room-unblocked"
	if al.Kind == guard.AddressQuarantined {
		action = "address-released"
	}
	a.record(al, action, audit.OutcomeInfo)
}

func (a alarmEvents) record(al guard.Alarm, action, outcome string) {
	err := a.audit.Record(context.Background(), audit.Event{Actor: audit.ActorSystem, Action: action, Target: al.Subject,
		Outcome: outcome, Details: map[string]string{"failures": strconv.Itoa(al.Failures),
			"since": al.Since.UTC().Format(time.RFC3339), "until": al.Until.UTC().Format(time.RFC3339)}})
	if err != nil {
		a.log.Error("audit record failed", "action", action, "err", err)
	}
}
