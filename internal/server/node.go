package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"conclave/internal/access"
	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/bus"
	"conclave/internal/cascade"
	"conclave/internal/clock"
	"conclave/internal/config"
	"conclave/internal/conn"
	"conclave/internal/files"
	"conclave/internal/guard"
	"conclave/internal/meeting"
	"conclave/internal/nodeca"
	"conclave/internal/nodeconf"
	"conclave/internal/pki"
	"conclave/internal/procstat"
	"conclave/internal/secrets"
	"conclave/internal/sfu"
	"conclave/internal/spool"
	"conclave/internal/turn"
	"conclave/internal/version"
	"conclave/internal/web"
	webassets "conclave/web"
)

// NodeDir is the directory, inside a conference node's data directory,
// of its identity (nodeca), its configuration cache and its spool.
const NodeDir = "node"

// Node is a running conference node (conclave node run): meetings,
// signaling and media for participants, its configuration from the bus,
// its audit entries spooled to the management node. It has no database,
// accounts or management of its own.
type Node struct {
	cfg      config.Config
	log      *slog.Logger
	clock    clock.Clock
	id       *nodeca.Node
	conf     *nodeconf.Cache
	spool    *spool.Spool
	tls      *pki.Material
	engine   *sfu.Engine
	meetings *meeting.Manager
	guard    *guard.Guard
	auditAgg *audit.Aggregator
	files    *files.Store
	alarms   *alarm.Center
	mesh     *cascade.Mesh
	debug    *debugServer // nil unless --debug-listen
	logs     *logProxy    // the E2EE log: the management node's, or the node's copy
	peers    *peerBook
	nodes    *nodeTable    // the other nodes' latest status
	load     atomic.Uint64 // this node's load (math.Float64bits)
	http     *http.Server
	listener net.Listener
	https    *httpsPort // the HTTPS port, shared with TURN over TLS, and TURN
	url      string
	started  time.Time
	draining atomic.Bool

	mu sync.Mutex
	nc *nats.Conn // nil until Start

	ctx       context.Context
	cancel    context.CancelFunc
	served    chan error
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NodeOptions adjust a conference node for tests; the zero value is
// production.
type NodeOptions struct {
	// Assets replaces the embedded web client.
	Assets fs.FS
	// ResumeWindow overrides the meeting resume window.
	ResumeWindow time.Duration
	// Tap sees every media packet the SFU forwards (tests only).
	Tap sfu.Tap
	// Clock replaces the system clock of the node's time-based rules.
	Clock clock.Clock
	// RelayTap sees every RTP packet other nodes relay to this one
	// (tests only).
	RelayTap func(from string, t conn.RelayedTrack, raw []byte)
	// ListenRelay opens the TURN server's relay sockets (nil is
	// net.ListenUDP).
	ListenRelay func(network string, laddr *net.UDPAddr) (*net.UDPConn, error)
}

// OpenNode prepares a conference node from its enrolled identity
// (conclave node enrol) and its configuration cache. It starts even when
// the bus is unreachable: with a configuration received earlier it
// admits participants at once; without one it refuses them until the
// management node has been reached.
func OpenNode(cfg config.Config, log *slog.Logger, opts NodeOptions) (*Node, error) {
	if err := cfg.ValidateNode(); err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.DataDir, NodeDir)
	box, err := secrets.Open(cfg.DataDir, secrets.Source{KeyFile: cfg.Secrets.KeyFile, Key: cfg.Secrets.Key, Passphrase: cfg.Secrets.Passphrase})
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	id, err := nodeca.LoadNodeSealed(dir, box)
	if err != nil {
		return nil, err
	}
	if id.Role() != nodeca.RoleConference && id.Role() != nodeca.RoleEdge {
		return nil, fmt.Errorf("this node is enrolled as a %s node; conclave node run runs conference and edge nodes", id.Role())
	}
	edge := id.Role() == nodeca.RoleEdge
	clk := clock.Or(opts.Clock)
	n := &Node{cfg: cfg, log: log.With("node", id.Name()), clock: clk, id: id, started: clk.Now().UTC()}
	ok := false
	defer func() {
		if !ok {
			n.closeParts()
		}
	}()
	if n.conf, err = nodeconf.OpenCache(dir, n.log); err != nil {
		return nil, err
	}
	if n.spool, err = spool.Open(filepath.Join(dir, "spool"), func() time.Time { return clk.Now() }); err != nil {
		return nil, fmt.Errorf("open the audit spool: %w", err)
	}
	if n.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	n.url = publicURL(cfg, n.listener.Addr())
	if n.tls, err = pki.Ensure(pki.Options{Dir: cfg.DataDir, Hosts: cfg.Hosts, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
		CRLURL: n.url + web.CRLPath, Box: box}); err != nil {
		return nil, fmt.Errorf("prepare TLS certificates: %w", err)
	}
	if n.engine, err = sfu.NewEngine(sfu.Config{UDPAddr: cfg.MediaUDP, TCPAddr: cfg.MediaTCP, PublicIPs: cfg.PublicIPs,
		IncludeLoopback: true, Logger: n.log, Tap: opts.Tap}); err != nil {
		return nil, err
	}
	n.alarms = alarm.New(clk)
	n.auditAgg = audit.NewAggregator(n.spool, clk, 0)
	allow, err := guard.ParseAllow(cfg.AllowList)
	if err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	gcfg := guard.DefaultConfig()
	gcfg.Allow = allow
	// The break-in rules count on each node: a node cut off from the
	// others still blocks a room it sees attacked, and quarantines the
	// address attacking it.
	if n.guard, err = guard.New(gcfg, clk, alarmEvents{log: n.log, audit: n.spool, alarms: n.alarms}); err != nil {
		return nil, fmt.Errorf("break-in guard: %w", err)
	}
	gate, err := access.New(n.conf, n.guard, n.auditAgg, auth.NewHashBudget(cfg.HashMemory), n.log)
	if err != nil {
		return nil, err
	}
	nodeTickets(gate, id.Name(), func() []byte { return n.conf.Management().TicketKey }, clk)
	// TURN as on `conclave serve`: on UDP and TCP (3478 by default) and
	// over TLS on the HTTPS port; the node gives credentials to the
	// participants that join it, for relays toward its own SFU.
	n.https = newHTTPSPort(newLimitListener(n.listener, DefaultMaxConnsPerAddress, n.guard, n.log), cfg, n.log)
	if err := n.https.openTURN(cfg, n.url, n.engine, clk, opts.ListenRelay, n.log); err != nil {
		return nil, err
	}
	n.meetings = meeting.NewManager(meeting.Config{ResumeWindow: opts.ResumeWindow, Logger: n.log, Clock: clk,
		MaxParticipants: cfg.MaxParticipants, Audit: hostAuditor{log: n.log, audit: n.spool},
		Relay: n.https.meetingRelay(), AlwaysRelay: cfg.AlwaysRelay}, n.engine, gate)
	if n.files, err = files.Open(filepath.Join(cfg.DataDir, "files"), files.Config{MaxSize: cfg.MaxFileSize, Clock: clk}); err != nil {
		return nil, err
	}
	n.meetings.OnMeetingEnd(n.files.DeleteMeeting)
	relayListen := cfg.RelayAddr()
	if edge {
		// An edge dials the internal nodes; it listens only if told to
		// (links between edge nodes).
		relayListen = cfg.Cluster.RelayListen
	}
	if n.mesh, err = cascade.Listen(cascade.Config{Name: id.Name(), URL: n.url, Listen: relayListen, Edge: edge,
		Cert: id.Certificate, Trust: nodeca.Trust{Roots: id.Roots(), Revoked: n.conf.Revoked},
		Media: n.engine, Rooms: n.meetings, Files: n.files, Log: n.log, Tap: opts.RelayTap}); err != nil {
		return nil, err
	}
	n.meetings.SetFederation(n.mesh)
	if n.peers, err = openPeerBook(filepath.Join(dir, peersFile), id.Name(), n.mesh); err != nil {
		return nil, err
	}
	n.nodes = newNodeTable()
	n.meetings.SetDirector(&director{self: id.Name(), edge: edge, selfURL: n.url, mesh: n.mesh, nodes: n.nodes,
		policy: n.conf.Policy, draining: n.draining.Load, load: func() float64 { return math.Float64frombits(n.load.Load()) },
		now: clk.Now})

	assets := opts.Assets
	if assets == nil {
		assets = webassets.FS
	}
	if n.logs, err = newLogProxy(n.conf, filepath.Join(dir, "e2ee-log"), n.log); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	handler := web.New(n.ctx, web.Config{
		Meetings:     n.meetings,
		Files:        n.files,
		RemoteFiles:  n.mesh,
		Assets:       assets,
		PublicURL:    n.url,
		CRL:          n.tls.CRL,
		Logger:       n.log,
		Clock:        clk,
		Plane:        web.PlaneNode,
		Org:          n.conf,
		Guard:        n.guard,
		PINMinLength: auth.DefaultPINMinLen,
		PeerOrigins:  func() []string { return clusterOrigins(n.mesh, n.nodes, n.clock.Now()) },
		LogUpstream:  n.logs,
		SignIn:       func() string { return n.conf.Management().URL },
	})
	if cfg.DebugListen != "" {
		// The node's figures as on `conclave serve`'s /metrics: media,
		// meetings, alarms, TURN.
		reg := newRegistry(nodeFigures{media: n.engine, meetings: n.meetings.Stats, alarms: n.alarms, relay: n.https.stats()}, nil)
		if n.debug, err = startDebug(cfg.DebugListen, n.log, metricsHandler(reg), relayCapture(n.mesh)); err != nil {
			return nil, err
		}
	}
	n.http = n.https.server(handler, n.https.tlsConfig(pki.ServerTLSConfig(n.tls.Certificate)), n.log)
	ok = true
	return n, nil
}

// Start serves participants and joins the cluster's bus in the
// background.
func (n *Node) Start() {
	n.served = make(chan error, 1)
	go n.guard.Run(n.ctx)
	go n.auditAgg.Run(n.ctx)
	n.logs.follow(n.clock)
	go func() { n.served <- n.https.serve(n.http) }()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.runBus(n.ctx)
	}()
	if err := n.serveControl(n.ctx); err != nil {
		n.log.Error("cluster: conclave node drain will not reach this node", "err", err)
	}
}

// runBus connects to the bus (retrying while it is unreachable) and runs
// the node's part of it until ctx ends: the configuration watch, the
// spool's delivery, the status, the commands.
func (n *Node) runBus(ctx context.Context) {
	host := strings.TrimPrefix(n.cfg.Cluster.NATS, "tls://")
	serverName, _, err := net.SplitHostPort(host)
	if err != nil {
		serverName = host
	}
	trust := nodeca.Trust{Roots: n.id.Roots(), Roles: []string{nodeca.RoleManagement}}
	nc, err := bus.Connect(n.cfg.Cluster.NATS, n.id.Certificate, trust, serverName, n.id.Name(),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.conf.Lost()
			n.log.Warn("cluster: the bus is unreachable; the node goes on with its copy of the configuration", "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) { n.log.Info("cluster: the bus is reachable again") }),
		bus.LogErrors(n.log, n.cfg.Cluster.NATS),
	)
	if err != nil {
		n.log.Error("cluster: cannot use the bus", "url", n.cfg.Cluster.NATS, "err", err)
		return
	}
	n.mu.Lock()
	n.nc = nc
	n.mu.Unlock()
	defer nc.Close()

	if _, err := nc.Subscribe(bus.NodePrefix+"*.status", func(m *nats.Msg) {
		if st, err := bus.DecodeStatus(m); err == nil {
			n.peers.heard(st)
			n.nodes.update(st, n.clock.Now())
		}
	}); err != nil {
		n.log.Error("cluster: cannot follow the other nodes", "err", err)
	}
	if _, err := nc.Subscribe(bus.CommandSubject(n.id.Name(), bus.CommandDrain), func(m *nats.Msg) {
		n.SetDraining(string(m.Data) != "off")
		if m.Reply != "" {
			_ = m.Respond([]byte("ok"))
		}
	}); err != nil {
		n.log.Error("cluster: cannot receive commands", "err", err)
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); n.spool.Ship(ctx, nc, n.id.Name(), n.log) }()
	go func() { defer wg.Done(); n.watchConfig(ctx, nc) }()
	go func() { defer wg.Done(); n.publishStatus(ctx, nc) }()
	wg.Wait()
}

// watchConfig follows the configuration bucket, starting the watch again
// whenever it ends (the bus went away, the management node restarted).
func (n *Node) watchConfig(ctx context.Context, nc *nats.Conn) {
	failing := false
	for ctx.Err() == nil {
		err := func() error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			kv, err := bus.ConfigBucketOf(kctx, nc)
			cancel()
			if err != nil {
				return err
			}
			if failing {
				n.log.Info("cluster: following the configuration again")
				failing = false
			}
			return n.conf.Watch(ctx, kv)
		}()
		if ctx.Err() != nil {
			return
		}
		if !failing {
			n.log.Warn("cluster: cannot follow the configuration; admitting with the copy kept on disk", "err", err)
			failing = true
		}
		n.conf.Lost()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// publishStatus publishes the node's status every bus.StatusInterval.
func (n *Node) publishStatus(ctx context.Context, nc *nats.Conn) {
	t := time.NewTicker(bus.StatusInterval)
	defer t.Stop()
	var load loadMeter
	for {
		l := load.read()
		n.load.Store(math.Float64bits(l))
		if nc.IsConnected() {
			if err := bus.PublishStatus(nc, n.Status(l)); err != nil {
				n.log.Debug("cluster: status not published", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Status is the node's status now; load is its CPU load (0..1).
func (n *Node) Status(load float64) bus.Status {
	meetings, participants := n.meetings.Stats()
	var labels []string
	for _, d := range n.conf.Nodes() {
		if d.Name == n.id.Name() && d.Labels != "" {
			labels = strings.Split(d.Labels, ",")
		}
	}
	return bus.Status{Name: n.id.Name(), Role: n.id.Role(), Labels: labels, Version: version.Get().Version,
		URL: n.url, Relay: relayAdvertise(n.id.Leaf(), n.mesh.Addr()), Meetings: meetings, Participants: participants, Load: load, Draining: n.draining.Load(),
		CertExpiry: n.id.Leaf().NotAfter.UTC(), ConfigRevision: n.conf.Revision(), Spooled: n.spool.Pending(),
		Started: n.started, Time: n.clock.Now().UTC()}
}

// SetDraining starts or ends draining (conclave node drain): while
// draining, the node sends joining participants to other nodes, and,
// when it starts, its own participants too. It returns how many
// participants were sent away.
func (n *Node) SetDraining(on bool) int {
	if n.draining.Swap(on) != on {
		n.log.Info("cluster: draining", "on", on)
	}
	if !on {
		return 0
	}
	moved := n.meetings.Drain()
	n.log.Info("cluster: participants sent to other nodes", "participants", moved)
	return moved
}

// loadMeter turns the process's CPU time into a load between 0 and 1.
type loadMeter struct {
	lastCPU time.Duration
	lastAt  time.Time
}

func (l *loadMeter) read() float64 {
	s, err := procstat.Read(os.Getpid())
	now := time.Now()
	if err != nil {
		return 0
	}
	defer func() { l.lastCPU, l.lastAt = s.CPU, now }()
	if l.lastAt.IsZero() {
		return 0
	}
	wall := now.Sub(l.lastAt)
	if wall <= 0 {
		return 0
	}
	return min(1, float64(s.CPU-l.lastCPU)/float64(wall)/float64(runtime.NumCPU()))
}

// Name is the node's name.
func (n *Node) Name() string { return n.id.Name() }

// Role is the node's role (conference or edge).
func (n *Node) Role() string { return n.id.Role() }

// URL is the node's HTTPS base URL.
func (n *Node) URL() string { return n.url }

// RelayAddr is the node-to-node listener's address.
func (n *Node) RelayAddr() net.Addr { return n.mesh.Addr() }

// Knows reports whether the node has a current status of node (heard on
// the bus within bus.StatusStale).
func (n *Node) Knows(node string) bool {
	for _, st := range n.nodes.list(n.clock.Now()) {
		if st.Name == node && st.Up {
			return true
		}
	}
	return false
}

// Linked returns the nodes this one is linked to now.
func (n *Node) Linked() []string { return n.mesh.LinkedNodes() }

// MediaAddr is the node's media UDP address.
func (n *Node) MediaAddr() net.Addr { return n.engine.UDPAddr() }

// DebugAddr is the address of the debug listener (metrics, profiles,
// relay capture), nil without --debug-listen.
func (n *Node) DebugAddr() net.Addr {
	if n.debug == nil {
		return nil
	}
	return n.debug.Addr()
}

// TURN is the node's embedded TURN server, nil when it is off.
func (n *Node) TURN() *turn.Server { return n.https.relay }

// TLS is the node's web certificate material.
func (n *Node) TLS() *pki.Material { return n.tls }

// ConfigReady reports whether the node has a configuration to admit
// with, and whether it is the bus's current one.
func (n *Node) ConfigReady() (have, current bool) { return n.conf.Ready(), n.conf.Synced() }

// Spooled is how many audit entries wait for the management node.
func (n *Node) Spooled() int { return n.spool.Pending() }

// Files reports the bytes of meeting files the node keeps, and how many
// files of other nodes it knows of (both go when their meeting ends).
func (n *Node) Files() (stored int64, elsewhere int) { return n.files.Used(), n.files.Remote() }

// HasMembers reports whether this node knows node's admitted
// participants in the meeting meetingID.
func (n *Node) HasMembers(node, meetingID string) bool { return n.meetings.HasMembers(node, meetingID) }

// Close stops the node: meetings end, what is spooled stays on disk.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	n.meetings.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.auditAgg.Flush(ctx, true)
	n.cancel()
	n.logs.close()
	err := n.http.Shutdown(ctx)
	if n.served != nil {
		if serr := <-n.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	n.wg.Wait()
	return errors.Join(err, n.closeParts())
}

func (n *Node) closeParts() error {
	var errs []error
	if n.mesh != nil {
		errs = append(errs, n.mesh.Close())
	}
	if n.debug != nil {
		errs = append(errs, n.debug.Close())
	}
	if n.https != nil {
		errs = append(errs, n.https.Close())
	} else if n.listener != nil {
		errs = append(errs, n.listener.Close())
	}
	if n.engine != nil {
		errs = append(errs, n.engine.Close())
	}
	if n.spool != nil {
		errs = append(errs, n.spool.Close())
	}
	return errors.Join(errs...)
}
