// Package cascade links conference nodes so that a meeting can span
// them (docs/cluster.md, "Meetings across nodes"): every pair of nodes
// keeps one mutually authenticated TLS 1.3 connection (internal/nodeca:
// AES-256-GCM, P-384, certificates of the cluster CA, revoked ones
// refused), dialled by the node whose name sorts first. Over it travel
// the meetings' events (internal/meeting's Federation: participants,
// roles, lock, lobby, E2EE announcements, key, chat and verification
// messages, host commands) and their media, once per node and direction
// (conn.RelaySender on one side, conn.RelayedTrack on the other), still
// end-to-end encrypted. The links do not go through the management node:
// meetings that span nodes go on while it is down.
package cascade

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/conn"
	"conclave/internal/meeting"
	"conclave/internal/nodeca"
)

// Rooms is what the mesh tells the node's meetings
// (*meeting.Manager).
type Rooms interface {
	Deliver(node, alias string, ev meeting.Event)
	NodeUp(node string)
	NodeDown(node string)
	RemoteTrack(node, alias, participant string, t conn.UpTrack)
	RemoteTrackEnded(node, alias, participant string, t conn.UpTrack)
	// HasMembers reports whether node has admitted members in the
	// meeting instance meetingID (who may fetch its files).
	HasMembers(node, meetingID string) bool
}

// Config configures a node's mesh.
type Config struct {
	// Name is this node's name (its certificate's); URL its HTTPS base
	// URL for browsers, told to the other nodes.
	Name, URL string
	// Edge says this node is an edge node (in a DMZ): it dials every
	// internal node itself, and no internal node dials it, so that the
	// internal nodes need accept nothing from outside but the edges'
	// links.
	Edge bool
	// Listen is the node-to-node listener's address.
	Listen string
	// Cert returns the node's current certificate.
	Cert func() *tls.Certificate
	// Trust checks the other nodes' certificates (roots, revocations).
	Trust nodeca.Trust
	// Media relays the meetings' tracks.
	Media conn.RelayEngine
	// Rooms receives the other nodes' events and tracks.
	Rooms Rooms
	// Files is the node's store of meeting files: those kept here are
	// announced to the other nodes and served to their members, and the
	// others' are fetched on demand (files.go). Nil: no files cross.
	Files Files
	Log   *slog.Logger
	// Tap, when set, sees every relayed RTP packet this node receives
	// (tests: what crosses the link is end-to-end encrypted).
	Tap func(from string, t conn.RelayedTrack, raw []byte)
}

// redialDelay is how long a node waits before dialling a node again.
const redialDelay = 500 * time.Millisecond

// Mesh is a node's links to the other nodes.
type Mesh struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	server *tls.Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	peers  map[string]string // name -> relay address, of the nodes to dial
	addrs  map[string]string // name -> relay address, of every node with a listener (file fetches)
	dials  map[string]context.CancelFunc
	links  map[string]*link
	urls   map[string]string // name -> HTTPS URL (from hellos)
	roles  map[string]string // name -> role (from certificates)
	closed bool

	capMu    sync.Mutex                 // serialises changes of captures
	captures atomic.Pointer[[]*capture] // Capture calls in progress (capture.go)

	fileServes chan struct{}       // files being served to other nodes (files.go)
	fileBacks  chan struct{}       // connections back being opened (files.go)
	backs      map[string]fileWait // connections back waited for, by token; under mu
	fileStart  time.Duration       // fileStartTimeout
}

// Listen opens the node-to-node listener.
func Listen(cfg Config) (*Mesh, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	tr := cfg.Trust
	tr.Roles = []string{nodeca.RoleConference, nodeca.RoleManagement, nodeca.RoleEdge}
	cfg.Trust = tr
	var ln net.Listener
	if cfg.Listen != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("node-to-node listener on %s: %w", cfg.Listen, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{cfg: cfg, log: cfg.Log, ln: ln, ctx: ctx, cancel: cancel,
		server: serverTLS(nodeca.ServerConfig(cfg.Cert, tr, tls.RequireAndVerifyClientCert)),
		peers:  map[string]string{}, addrs: map[string]string{}, dials: map[string]context.CancelFunc{}, links: map[string]*link{},
		urls: map[string]string{}, roles: map[string]string{},
		fileServes: make(chan struct{}, maxFileServes), fileBacks: make(chan struct{}, maxFileServes),
		backs: map[string]fileWait{}, fileStart: fileStartTimeout}
	if cfg.Files != nil {
		cfg.Files.OnStored(m.announceFile)
	}
	if ln != nil {
		m.wg.Add(1)
		go m.accept()
	}
	return m, nil
}

// Addr is the listener's address; nil for a node that only dials (an
// edge node without --relay-listen).
func (m *Mesh) Addr() net.Addr {
	if m.ln == nil {
		return nil
	}
	return m.ln.Addr()
}

// Advertise is the node-to-node address other nodes reach a listener
// at: the first address its node certificate (leaf) covers, with the
// listener's port; "" without a listener.
func Advertise(leaf *x509.Certificate, ln net.Addr) string {
	if ln == nil || leaf == nil {
		return ""
	}
	port := 0
	if ta, ok := ln.(*net.TCPAddr); ok {
		port = ta.Port
	}
	host := ""
	switch {
	case len(leaf.IPAddresses) > 0:
		host = leaf.IPAddresses[0].String()
	case len(leaf.DNSNames) > 0:
		host = leaf.DNSNames[0]
	default:
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// advertised is this node's Advertise.
func (m *Mesh) advertised() string {
	c := m.cfg.Cert()
	if c == nil || m.ln == nil {
		return ""
	}
	return Advertise(c.Leaf, m.ln.Addr())
}

// Self implements meeting.Federation.
func (m *Mesh) Self() string { return m.cfg.Name }

// Peer is another node as the bus tells it.
type Peer struct {
	Addr string // node-to-node address, host:port ("" for an edge)
	Edge bool
}

// dials reports whether this node dials peer: the node whose name sorts
// first dials, except that an edge dials every internal node and no
// internal node dials an edge.
func (m *Mesh) dialsPeer(name string, edge bool) bool {
	switch {
	case m.cfg.Edge && !edge:
		return true
	case edge && !m.cfg.Edge:
		return false
	}
	return name > m.cfg.Name
}

// SetPeers sets the other nodes (name -> peer). This node dials those
// it should (dialsPeer), and keeps dialling them while they are listed;
// the others dial it.
func (m *Mesh) SetPeers(peers map[string]Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	clear(m.addrs)
	for name, p := range peers {
		if name != m.cfg.Name && p.Addr != "" {
			m.addrs[name] = p.Addr
		}
	}
	for name, p := range peers {
		addr := p.Addr
		if name == m.cfg.Name || !m.dialsPeer(name, p.Edge) || addr == "" {
			continue
		}
		if old, ok := m.peers[name]; ok && old == addr {
			continue
		}
		if stop := m.dials[name]; stop != nil {
			stop()
		}
		m.peers[name] = addr
		ctx, cancel := context.WithCancel(m.ctx)
		m.dials[name] = cancel
		m.wg.Add(1)
		go m.dial(ctx, name, addr)
	}
	for name := range m.peers {
		if p, ok := peers[name]; !ok || p.Addr == "" {
			m.dials[name]()
			delete(m.dials, name)
			delete(m.peers, name)
		}
	}
}

// Linked is a node linked to this one.
type Linked struct {
	URL  string // its HTTPS base URL for browsers
	Role string // from its certificate
}

// Peers returns the nodes linked now.
func (m *Mesh) Peers() map[string]Linked {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Linked{}
	for name := range m.links {
		out[name] = Linked{URL: m.urls[name], Role: m.roles[name]}
	}
	return out
}

// Linked reports whether a link to node is up.
func (m *Mesh) Linked(node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.links[node] != nil
}

// dial keeps a link to node at addr until ctx ends.
func (m *Mesh) dial(ctx context.Context, name, addr string) {
	defer m.wg.Done()
	host, _, _ := net.SplitHostPort(addr)
	failing := false
	for ctx.Err() == nil {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 5 * time.Second},
			Config: nodeca.ClientConfig(m.cfg.Cert, m.cfg.Trust, host)}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			tc := c.(*tls.Conn)
			peer, role, perr := peerIdentity(tc)
			switch {
			case perr != nil:
				err = perr
			case peer != name:
				err = fmt.Errorf("the node at %s is %q, not %q", addr, peer, name)
			}
			if err != nil {
				tc.Close()
			} else {
				failing = false
				m.serve(ctx, name, role, tc)
			}
		}
		if err != nil && !failing && ctx.Err() == nil {
			m.log.Warn("cluster: cannot reach a node; retrying", "node", name, "addr", addr, "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(redialDelay):
		}
	}
}

func (m *Mesh) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil {
				return
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			m.log.Error("cluster: node-to-node listener failed", "err", err)
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			tc := tls.Server(c, m.server)
			hctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				m.log.Debug("cluster: node-to-node handshake refused", "remote", c.RemoteAddr(), "err", err)
				tc.Close()
				return
			}
			peer, role, err := peerIdentity(tc)
			if err == nil && peer != m.cfg.Name {
				// Not a link: another node fetching a meeting file, or
				// connecting back with one this node asked for.
				switch tc.ConnectionState().NegotiatedProtocol {
				case alpnFiles:
					m.serveFile(peer, tc)
					return
				case alpnFilesBack:
					m.takeBack(peer, tc)
					return
				}
			}
			if err == nil && m.dialsPeer(peer, role == nodeca.RoleEdge) {
				err = fmt.Errorf("node %q must wait for this node to dial it", peer)
			}
			if err == nil && peer == m.cfg.Name {
				err = fmt.Errorf("node %q is this node's own name", peer)
			}
			if err != nil {
				m.log.Warn("cluster: node-to-node connection refused", "remote", c.RemoteAddr(), "err", err)
				tc.Close()
				return
			}
			m.serve(m.ctx, peer, role, tc)
		}()
	}
}

// peerIdentity is the name and role in the peer's verified node
// certificate.
func peerIdentity(c *tls.Conn) (name, role string, err error) {
	cs := c.ConnectionState()
	if len(cs.VerifiedChains) == 0 {
		return "", "", errors.New("the peer presented no node certificate")
	}
	return nodeca.Identity(cs.VerifiedChains[0][0])
}

// serve runs a link until it ends.
func (m *Mesh) serve(ctx context.Context, peer, role string, c *tls.Conn) {
	l := newLink(m, peer, c)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Close()
		return
	}
	old := m.links[peer]
	m.links[peer] = l
	m.roles[peer] = role
	m.mu.Unlock()
	if old != nil {
		old.close()
	}
	stop := context.AfterFunc(ctx, l.close)
	defer stop()
	l.sendControl(&control{T: msgHello, Name: m.cfg.Name, URL: m.cfg.URL, Relay: m.advertised()})
	go l.writeLoop()
	m.log.Info("cluster: linked to a node", "node", peer)
	// The hello comes first; then this node's meetings are told.
	hello := make(chan struct{})
	go func() {
		defer l.close()
		err := l.readHello(hello)
		if err == nil {
			err = l.readLoop()
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			select {
			case <-l.done:
			default:
				m.log.Warn("cluster: link to a node ended", "node", peer, "err", err)
			}
		}
	}()
	select {
	case <-hello:
		m.cfg.Rooms.NodeUp(peer)
		m.announceFilesTo(l)
	case <-l.done:
	}
	<-l.done
	m.mu.Lock()
	current := m.links[peer] == l
	if current {
		delete(m.links, peer)
	}
	m.mu.Unlock()
	l.ended()
	if current {
		m.log.Warn("cluster: lost the link to a node", "node", peer)
		m.cfg.Rooms.NodeDown(peer)
	}
}

// readHello reads the peer's hello, which must come first.
func (l *link) readHello(done chan<- struct{}) error {
	l.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer l.c.SetReadDeadline(time.Time{})
	var h [headerLen]byte
	if _, err := readFull(l.c, h[:]); err != nil {
		return err
	}
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if h[0] != frameControl || n > maxControl {
		return errFrame
	}
	payload := make([]byte, n)
	if _, err := readFull(l.c, payload); err != nil {
		return err
	}
	c, err := parseControl(payload)
	if err != nil {
		return err
	}
	if c.T != msgHello || c.Name != l.peer {
		return fmt.Errorf("%w: expected the hello of %s", errFrame, l.peer)
	}
	l.mesh.mu.Lock()
	l.url, l.relay = c.URL, c.Relay
	l.mesh.urls[l.peer] = c.URL
	l.mesh.mu.Unlock()
	close(done)
	return nil
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Broadcast implements meeting.Federation.
func (m *Mesh) Broadcast(alias string, ev meeting.Event) {
	m.mu.Lock()
	links := make([]*link, 0, len(m.links))
	for _, l := range m.links {
		links = append(links, l)
	}
	m.mu.Unlock()
	for _, l := range links {
		l.sendControl(&control{T: msgEvent, Room: alias, Event: &ev})
	}
}

// Send implements meeting.Federation.
func (m *Mesh) Send(node, alias string, ev meeting.Event) {
	m.mu.Lock()
	l := m.links[node]
	m.mu.Unlock()
	if l != nil {
		l.sendControl(&control{T: msgEvent, Room: alias, Event: &ev})
	}
}

// Relay implements meeting.Federation.
func (m *Mesh) Relay(node, alias string) (conn.Subscriber, error) {
	m.mu.Lock()
	l := m.links[node]
	m.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("no link to node %q", node)
	}
	sink := &roomSink{l: l, room: alias}
	sink.sender = m.cfg.Media.NewRelay(sink)
	return sink.sender, nil
}

// Close ends every link and the listener.
func (m *Mesh) Close() error {
	m.mu.Lock()
	m.closed = true
	links := make([]*link, 0, len(m.links))
	for _, l := range m.links {
		links = append(links, l)
	}
	m.mu.Unlock()
	m.cancel()
	var err error
	if m.ln != nil {
		err = m.ln.Close()
	}
	for _, l := range links {
		l.close()
	}
	m.wg.Wait()
	return err
}

// Linked nodes, sorted, for logs and status.
func (m *Mesh) LinkedNodes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.links))
	for n := range m.links {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
