// Package server assembles a complete Conclave node from its parts — store,
// certificates, SFU, meetings and web front end — on the embedded default
// configuration. `conclave serve` and the end-to-end tests both use it.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pion/transport/v5"

	"conclave/internal/access"
	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/clock"
	"conclave/internal/config"
	"conclave/internal/files"
	"conclave/internal/guard"
	"conclave/internal/meeting"
	"conclave/internal/pki"
	"conclave/internal/ra"
	"conclave/internal/sfu"
	"conclave/internal/store"
	"conclave/internal/turn"
	"conclave/internal/web"
	webassets "conclave/web"
)

// Server is a running all-in-one Conclave node.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	store    *store.SQLite
	tls      *pki.Material
	engine   *sfu.Engine
	meetings *meeting.Manager
	enroller *auth.Enroller
	guard    *guard.Guard
	hashing  *auth.HashBudget
	accounts *auth.Accounts
	auditAgg *audit.Aggregator
	clock    clock.Clock
	files    *files.Store
	audit    *audit.Log
	http     *http.Server
	listener net.Listener
	demux    *turn.Demux  // shares the HTTPS port with TURN over TLS
	relay    *turn.Server // nil when TURN is off
	debug    *debugServer // nil unless --debug-listen
	url      string
	ctx      context.Context
	cancel   context.CancelFunc
	served   chan error
}

// Options adjust a server for tests; the zero value is production.
type Options struct {
	// Assets replaces the embedded web client.
	Assets fs.FS
	// ResumeWindow overrides the meeting resume window.
	ResumeWindow time.Duration
	// Tap sees every media packet the SFU forwards (tests only).
	Tap sfu.Tap
	// ListenRelay opens the TURN server's relay sockets (nil is
	// net.ListenUDP), and MediaNet lists the interfaces whose addresses
	// the SFU announces (nil is the system's). A test that runs the node
	// inside a network namespace (internal/testutil/netns) gives both of
	// that namespace.
	ListenRelay func(network string, laddr *net.UDPAddr) (*net.UDPConn, error)
	MediaNet    transport.Net
	// Clock replaces the system clock for the node's time-based rules:
	// break-in blocks, sessions, enrolment and credential expiry, audit
	// times, files' lifetime, and the meetings' timers (resume window,
	// waiting for a host, grace after the last host). The media path
	// keeps the system clock.
	Clock clock.Clock
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
	s := &Server{cfg: cfg, log: log, clock: clk}
	ok := false
	defer func() {
		if !ok {
			s.closeParts()
		}
	}()

	st, err := store.OpenSQLite(filepath.Join(cfg.DataDir, "conclave.db"))
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
		CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CRLURL: s.url + web.CRLPath})
	if err != nil {
		return nil, fmt.Errorf("prepare TLS certificates: %w", err)
	}
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
	s.audit = audit.NewLog(st, clk)
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
	s.guard, err = guard.New(gcfg, clk, alarmEvents{log: log, audit: s.audit})
	if err != nil {
		return nil, fmt.Errorf("break-in guard: %w", err)
	}
	gate, err := access.New(st, s.guard, s.auditAgg, s.hashing, log)
	if err != nil {
		return nil, err
	}
	tlsConfig := pki.ServerTLSConfig(s.tls.Certificate)
	if cfg.TURNTLS {
		tlsConfig.NextProtos = append(tlsConfig.NextProtos, turn.ALPN)
	}
	s.demux = turn.NewDemux(s.listener, tlsConfig, cfg.TURNTLS, log)
	var relay meeting.Relay
	if cfg.TURNEnabled() {
		if s.relay, err = openTURN(cfg, s.url, s.demux, s.engine, clk, opts.ListenRelay, log); err != nil {
			return nil, err
		}
		relay = s.relay
	}
	s.meetings = meeting.NewManager(meeting.Config{ResumeWindow: opts.ResumeWindow, Logger: log,
		Clock: clk, MaxParticipants: cfg.MaxParticipants,
		Relay: relay, AlwaysRelay: cfg.AlwaysRelay}, s.engine, gate)
	s.enroller = auth.NewEnroller(st, clk, auth.EnrolConfig{})
	org := cfg.OrgName
	if org == "" {
		org = s.url0()
	}
	authority, err := ra.Open(cfg.DataDir, org, org, clk)
	if err != nil {
		return nil, err
	}
	fileStore, err := files.Open(filepath.Join(cfg.DataDir, "files"), files.Config{MaxSize: cfg.MaxFileSize, Clock: clk})
	if err != nil {
		return nil, err
	}
	s.meetings.OnMeetingEnd(fileStore.DeleteMeeting)
	s.files = fileStore
	if cfg.PINMinLength == 0 {
		cfg.PINMinLength = auth.DefaultPINMinLen
	}

	if cfg.DebugListen != "" {
		var more []func(io.Writer)
		if s.relay != nil {
			more = append(more, func(w io.Writer) { turn.WriteMetrics(w, s.relay.Stats()) })
		}
		if s.debug, err = startDebug(cfg.DebugListen, log, s.engine, more...); err != nil {
			return nil, err
		}
	}

	assets := opts.Assets
	if assets == nil {
		assets = webassets.FS
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.cancel = ctx, cancel
	s.accounts = auth.NewAccounts(st, clk, auth.AccountsConfig{Audit: s.auditAgg})
	handler := web.New(ctx, web.Config{
		Store:        st,
		Sessions:     auth.NewSessions(st, clk, auth.SessionConfig{Audit: s.audit}),
		Accounts:     s.accounts,
		Guard:        s.guard,
		Hashing:      s.hashing,
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
	})
	s.http = &http.Server{
		Handler:           turn.WithTLSState(handler),
		ConnContext:       turn.ConnContext,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	ok = true
	return s, nil
}

// Start accepts connections in the background.
func (s *Server) Start() {
	s.served = make(chan error, 1)
	go s.guard.Run(s.ctx)
	go s.auditAgg.Run(s.ctx)
	go s.pruneThrottles(s.ctx, time.Hour)
	go func() {
		// The demux completes TLS handshakes with s.http.TLSConfig and
		// hands HTTPS connections over (TURN ones to the TURN server).
		s.served <- s.http.Serve(s.demux.HTTP())
	}()
}

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

// FlushAudit writes the counts of the repeated failures being aggregated
// now, without waiting for their minute to end (shutdown does it too).
func (s *Server) FlushAudit(ctx context.Context) error { return s.auditAgg.Flush(ctx, true) }

// HashStats reads the counts of the Argon2 memory budget.
func (s *Server) HashStats() auth.HashStats { return s.hashing.Stats() }

// DataDir is the node's data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

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

// ForwardDelay reads the histogram of the delay the SFU adds to what it
// forwards (also served as conclave_forward_delay_seconds on the debug
// listener).
func (s *Server) ForwardDelay() sfu.DelayHistogram { return s.engine.ForwardDelay() }

// SendStats reads the SFU's batched-send counters (also served on the
// debug listener).
func (s *Server) SendStats() sfu.SendStats { return s.engine.SendStats() }

// TURN is the embedded TURN server, nil when it is off.
func (s *Server) TURN() *turn.Server { return s.relay }

// openTURN starts the embedded TURN server: over UDP and TCP on their
// own ports, over TLS through the HTTPS port's demux, with relays bound
// for the SFU's media port only. Its URLs name the host of the public
// URL, and TLS its port, as clients reach the web client.
func openTURN(cfg config.Config, publicURL string, demux *turn.Demux, engine *sfu.Engine, clk clock.Clock,
	listen func(string, *net.UDPAddr) (*net.UDPConn, error), log *slog.Logger) (*turn.Server, error) {
	media, ok := engine.UDPAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("TURN: the media socket is not UDP")
	}
	peers, err := turn.MediaPeers(media, cfg.PublicIPs)
	if err != nil {
		return nil, err
	}
	relayIP := turn.RelayIP(media)
	if cfg.TURNRelayIP != "" {
		if relayIP, err = turn.ParseRelayIP(cfg.TURNRelayIP); err != nil {
			return nil, err
		}
	}
	u, err := url.Parse(publicURL)
	if err != nil {
		return nil, fmt.Errorf("TURN: public URL %q: %w", publicURL, err)
	}
	tc := turn.Config{UDPAddr: cfg.TURNUDP, TCPAddr: cfg.TURNTCP, Host: u.Hostname(), RelayIP: relayIP,
		Peers: peers, TTL: cfg.TURNTTL, MaxBitrate: cfg.TURNMaxBitrate, Now: clk.Now, ListenUDP: listen, Logger: log}
	if cfg.TURNTLS {
		tc.TLS, tc.TLSPort = demux.TURN(), 443
		if p := u.Port(); p != "" {
			tc.TLSPort, _ = strconv.Atoi(p)
		}
	}
	srv, err := turn.New(tc)
	if err != nil {
		return nil, fmt.Errorf("TURN: %w", err)
	}
	return srv, nil
}

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
	s.meetings.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.cancel()
	err := s.http.Shutdown(ctx)
	s.auditAgg.Flush(ctx, true)
	if s.served != nil {
		if serr := <-s.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	return errors.Join(err, s.closeParts())
}

func (s *Server) closeParts() error {
	var errs []error
	if s.debug != nil {
		errs = append(errs, s.debug.Close())
	}
	if s.relay != nil {
		errs = append(errs, s.relay.Close())
	}
	if s.demux != nil {
		errs = append(errs, s.demux.Close())
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.demux == nil && s.listener != nil {
		errs = append(errs, s.listener.Close())
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
	log   *slog.Logger
	audit audit.Recorder
}

func (a alarmEvents) Raised(al guard.Alarm) {
	a.log.Warn("alarm raised", "kind", al.Kind, "subject", al.Subject, "failures", al.Failures, "until", al.Until)
	a.record(al, string(al.Kind), audit.OutcomeFailure)
}

func (a alarmEvents) Cleared(al guard.Alarm) {
	a.log.Info("alarm cleared", "kind", al.Kind, "subject", al.Subject)
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
