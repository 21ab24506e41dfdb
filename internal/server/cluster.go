package server

import (
	"context"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"conclave/internal/access"
	"conclave/internal/bus"
	"conclave/internal/cascade"
	"conclave/internal/clock"
	"conclave/internal/nodeca"
	"conclave/internal/nodeconf"
	"conclave/internal/spool"
	"conclave/internal/ticket"
	"conclave/internal/version"
)

// ClusterDir is the directory, inside the data directory, of the cluster
// CA (docs/cluster.md).
const ClusterDir = "cluster"

// revocationRefresh is how often the cluster listener rereads the revoked
// node certificates, so that a node removed from the shell is refused
// within that time.
const revocationRefresh = 10 * time.Second

// cluster is the management node's side of the cluster: the CA and its
// listener, the bus (embedded or external), what it publishes there and
// what it learns from the nodes.
type cluster struct {
	ca       *nodeca.CA
	listener *nodeca.Listener
	hosts    []string
	bus      *bus.Server // nil with an external NATS (--nats)
	busURL   string
	nc       *nats.Conn
	pub      atomic.Pointer[nodeconf.Publisher]
	nodes    *nodeTable
	org      nodeconf.Org
	mesh     *cascade.Mesh // the management node's own meetings, linked to the nodes'
	peers    *peerBook
	policy   nodeconf.Policy
	draining atomic.Bool
	load     atomic.Uint64 // math.Float64bits of the management node's load
	tickets  *ticket.Issuer
}

// openCluster opens the cluster CA, its listener and the bus when
// --cluster-listen is set.
func (s *Server) openCluster(clk clock.Clock, org string, gate *access.Gate) error {
	if s.cfg.ClusterListen == "" {
		return nil
	}
	ca, err := nodeca.OpenSealed(filepath.Join(s.cfg.DataDir, ClusterDir), org, s.store, clk, s.ops.box)
	if err != nil {
		return err
	}
	hosts := s.cfg.Hosts
	if len(hosts) == 0 {
		if h, _, err := net.SplitHostPort(s.cfg.ClusterListen); err == nil && h != "" {
			hosts = []string{h}
		} else {
			hosts = []string{firstAddress()}
		}
	}
	ln, err := nodeca.Listen(ca, s.cfg.ClusterListen, hosts, s.log)
	if err != nil {
		return fmt.Errorf("cluster listener on %s (--cluster-listen): %w", s.cfg.ClusterListen, err)
	}
	s.clusterCA, s.cluster = ca, ln
	c := &cluster{ca: ca, listener: ln, hosts: hosts, nodes: newNodeTable()}
	s.cl = c
	ln.OnEnrol(s.ConfigChanged)
	trust := nodeca.Trust{Roots: ca.Pool(), Revoked: ca.Revoked}
	if s.cfg.Cluster.NATS != "" {
		c.busURL = s.cfg.Cluster.NATS
	} else {
		c.bus, err = bus.Start(bus.Config{Listen: s.cfg.BusAddr(), StoreDir: filepath.Join(s.cfg.DataDir, ClusterDir, "jetstream"),
			Cert: ln.Certificate, Trust: trust, Log: s.log})
		if err != nil {
			return fmt.Errorf("the cluster's bus on %s (--bus-listen): %w", s.cfg.BusAddr(), err)
		}
		_, port, _ := net.SplitHostPort(c.bus.Addr().String())
		c.busURL = "tls://" + net.JoinHostPort(loopbackOf(s.cfg.BusAddr()), port)
	}
	serverName := hosts[0]
	if u := strings.TrimPrefix(c.busURL, "tls://"); s.cfg.Cluster.NATS != "" {
		serverName, _, _ = net.SplitHostPort(u)
	}
	c.nc, err = bus.Connect(c.busURL, ln.Certificate, nodeca.Trust{Roots: ca.Pool()}, serverName, "management", bus.LogErrors(s.log, c.busURL))
	if err != nil {
		c.close()
		return err
	}
	if s.cfg.Cluster.NATS != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = bus.CheckExternal(ctx, c.nc, c.busURL, clock.Or(clk).Now(), s.log.Warn)
		cancel()
		if err != nil {
			c.close()
			return err
		}
	}
	// The management node hosts meetings too: linked to the conference
	// nodes', they can span both.
	c.mesh, err = cascade.Listen(cascade.Config{Name: "management", URL: s.url, Listen: s.cfg.RelayAddr(),
		Cert: ln.Certificate, Trust: trust, Media: s.engine, Rooms: s.meetings, Files: s.files, Log: s.log, Tap: s.opts.RelayTap})
	if err != nil {
		c.close()
		return err
	}
	s.meetings.SetFederation(c.mesh)
	c.peers, _ = openPeerBook("", "management", c.mesh)
	if c.policy, err = policyOf(s.cfg.Cluster); err != nil {
		c.close()
		return err
	}
	s.meetings.SetDirector(&director{self: "management", selfURL: s.url, mesh: c.mesh, nodes: c.nodes,
		policy: func() nodeconf.Policy { return c.policy }, draining: c.draining.Load,
		load: func() float64 { return math.Float64frombits(c.load.Load()) }, now: s.clock.Now})
	if c.tickets, err = s.openTickets(clk, gate); err != nil {
		c.close()
		return err
	}
	return nil
}

// loopbackOf is the address the management node reaches its own
// embedded bus at: the listen host, or loopback for a wildcard.
func loopbackOf(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip != nil && ip.IsUnspecified():
		return "127.0.0.1"
	}
	return host
}

func (c *cluster) close() {
	if c.mesh != nil {
		c.mesh.Close()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.bus != nil {
		c.bus.Close()
	}
}

// startCluster runs the management node's cluster loops until ctx ends:
// the revocations, the JetStream resources, the configuration published
// to the nodes, the spool of their audit entries, their status.
func (s *Server) startCluster(ctx context.Context) {
	c := s.cl
	go s.refreshRevocations(ctx)
	sub, err := c.nc.Subscribe(bus.NodePrefix+"*.status", func(m *nats.Msg) {
		st, err := bus.DecodeStatus(m)
		if err != nil {
			s.log.Warn("cluster: malformed node status", "err", err)
			return
		}
		c.nodes.update(st, s.clock.Now())
		c.peers.heard(st)
	})
	if err != nil {
		s.log.Error("cluster: cannot follow the nodes' status", "err", err)
	} else {
		go func() { <-ctx.Done(); sub.Unsubscribe() }()
	}
	go func() {
		var load loadMeter
		t := time.NewTicker(bus.StatusInterval)
		defer t.Stop()
		for {
			meetings, participants := s.meetings.Stats()
			l := load.read()
			c.load.Store(math.Float64bits(l))
			st := bus.Status{Name: "management", Role: nodeca.RoleManagement, Version: version.Get().Version, URL: s.url,
				Relay: relayAdvertise(c.listener.Certificate().Leaf, c.mesh.Addr()), Meetings: meetings, Draining: c.draining.Load(),
				Participants: participants, Load: l, CertExpiry: c.listener.Certificate().Leaf.NotAfter.UTC(),
				Started: s.started, Time: s.clock.Now().UTC()}
			if err := bus.PublishStatus(c.nc, st); err != nil {
				s.log.Debug("cluster: status not published", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		for {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			kv, js, err := bus.Setup(sctx, c.nc)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("cluster: preparing the bus failed; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
				continue
			}
			more := nodeconf.Published{Org: c.org, Policy: c.policy, Management: nodeconf.Management{URL: s.url,
				TicketKey: c.tickets.PublicKey()}}
			if s.tls.CACert != nil {
				more.Management.CA = s.tls.CACert.Raw
			}
			pub := nodeconf.NewPublisher(s.store, c.ca.RevokedSerials, more, kv, s.log)
			c.pub.Store(pub)
			go pub.Run(ctx)
			for ctx.Err() == nil {
				if err := spool.Consume(ctx, js, s.audit, s.log); err != nil && ctx.Err() == nil {
					s.log.Warn("cluster: taking the nodes' audit entries failed; retrying", "err", err)
					time.Sleep(2 * time.Second)
				}
			}
			return
		}
	}()
}

// refreshRevocations rereads the revoked node certificates until ctx
// ends.
func (s *Server) refreshRevocations(ctx context.Context) {
	stop := clock.Every(s.clock, revocationRefresh, func() {
		if err := s.clusterCA.RefreshRevoked(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reading revoked node certificates failed", "err", err)
		}
	})
	<-ctx.Done()
	stop()
}

// ClusterAddr is the address of the cluster listener; nil without
// --cluster-listen.
func (s *Server) ClusterAddr() net.Addr {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.Addr()
}

// BusURL is the URL nodes reach the embedded bus at (tls://host:port);
// empty without --cluster-listen or with an external bus.
func (s *Server) BusURL() string {
	if s.cl == nil || s.cl.bus == nil {
		return ""
	}
	return s.cl.bus.URL()
}

// BusAddr is the embedded bus's address; nil without one.
func (s *Server) BusAddr() net.Addr {
	if s.cl == nil || s.cl.bus == nil {
		return nil
	}
	return s.cl.bus.Addr()
}

// ClusterCA is the cluster's certificate authority; nil without
// --cluster-listen.
func (s *Server) ClusterCA() *nodeca.CA { return s.clusterCA }

// NodeStatuses returns the latest status of each node heard from.
func (s *Server) NodeStatuses() []NodeState {
	if s.cl == nil {
		return nil
	}
	return s.cl.nodes.list(s.clock.Now())
}

// ConfigChanged publishes the configuration to the nodes now, rather
// than at the next round (a room was created, changed or deleted).
func (s *Server) ConfigChanged() {
	if s.cl != nil {
		if pub := s.cl.pub.Load(); pub != nil {
			pub.Changed()
		}
	}
}

// NodeState is a node's latest status and whether it is current.
type NodeState struct {
	bus.Status
	// Heard is when the status arrived; Up is false when the node has
	// not been heard from for bus.StatusStale.
	Heard time.Time
	Up    bool
}

// nodeTable keeps the latest status of each node.
type nodeTable struct {
	mu   sync.Mutex
	last map[string]NodeState
}

func newNodeTable() *nodeTable { return &nodeTable{last: map[string]NodeState{}} }

func (t *nodeTable) update(st bus.Status, now time.Time) {
	t.mu.Lock()
	t.last[st.Name] = NodeState{Status: st, Heard: now}
	t.mu.Unlock()
}

func (t *nodeTable) list(now time.Time) []NodeState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]NodeState, 0, len(t.last))
	for _, n := range t.last {
		n.Up = now.Sub(n.Heard) < bus.StatusStale
		out = append(out, n)
	}
	return out
}

// peerOrigins are the other nodes' HTTPS origins (web.Config.PeerOrigins).
func (s *Server) peerOrigins() []string {
	if s.cl == nil {
		return nil
	}
	return clusterOrigins(s.cl.mesh, s.cl.nodes, s.clock.Now())
}

// clusterOrigins are the HTTPS origins of the other nodes: those linked
// now, and every node heard on the bus since the start, down ones
// included — a page from a node that died opens its WebSocket to another
// node.
func clusterOrigins(mesh *cascade.Mesh, nodes *nodeTable, now time.Time) []string {
	seen := map[string]bool{}
	var out []string
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, p := range mesh.Peers() {
		add(p.URL)
	}
	for _, st := range nodes.list(now) {
		add(st.URL)
	}
	return out
}
