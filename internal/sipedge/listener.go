package sipedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"sync"

	"conclave/internal/devca"
	"conclave/internal/pki"
)

// authListener hands sipgo only connections whose TLS handshake has
// completed with a valid device certificate. Handshakes run on their own
// goroutines with a deadline, so a slow or silent client holds up no one;
// a refused handshake is audited and counted by the break-in guard, and a
// quarantined address is closed before any TLS byte is read.
type authListener struct {
	e       *Edge
	tcp     net.Listener
	tlsConf *tls.Config
	ready   chan net.Conn
	closed  chan struct{}
	once    sync.Once

	mu    sync.Mutex
	conns map[string]*authConn
	n     int // connections open or in handshake
}

// authConn is an authenticated connection.
type authConn struct {
	*tls.Conn
	l        *authListener
	key      string
	addr     netip.AddrPort
	identity devca.Identity
	chain    [][]byte
	once     sync.Once
}

func newAuthListener(e *Edge, tcp net.Listener) *authListener {
	conf := pki.ServerTLSConfig(e.cfg.Certificate)
	conf.NextProtos = nil
	conf.ClientAuth = tls.RequireAnyClientCert
	// Renegotiation is off by default in crypto/tls servers; session
	// tickets would let a revoked device resume without presenting its
	// certificate again, so every connection does a full handshake.
	conf.SessionTicketsDisabled = true
	l := &authListener{e: e, tcp: tcp, tlsConf: conf, ready: make(chan net.Conn), closed: make(chan struct{}),
		conns: map[string]*authConn{}}
	go l.acceptLoop()
	return l
}

func (l *authListener) acceptLoop() {
	for {
		raw, err := l.tcp.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close()
			return
		}
		ap, _ := netip.ParseAddrPort(raw.RemoteAddr().String())
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if l.e.deps.Guard.Check(ap.Addr(), "") != nil {
			raw.Close()
			continue
		}
		l.mu.Lock()
		full := l.n >= l.e.cfg.MaxConnections
		if !full {
			l.n++
		}
		l.mu.Unlock()
		if full {
			raw.Close()
			continue
		}
		go l.handshake(raw, ap)
	}
}

func (l *authListener) handshake(raw net.Conn, ap netip.AddrPort) {
	tc := tls.Server(raw, l.tlsConf)
	ctx, cancel := context.WithTimeout(context.Background(), l.e.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	var id devca.Identity
	var chain [][]byte
	if err == nil {
		chain = rawChain(tc.ConnectionState().PeerCertificates)
		id, err = l.e.reverify(&authConn{chain: chain})
	}
	if err != nil {
		tc.Close()
		l.release()
		l.e.fail(ap.Addr(), ActionTLSRefused, "", "", err.Error())
		l.e.log.Info("SIP TLS connection refused", "remote", ap.String(), "err", err)
		return
	}
	c := &authConn{Conn: tc, l: l, key: raw.RemoteAddr().String(), addr: ap, identity: id, chain: chain}
	l.mu.Lock()
	l.conns[c.key] = c
	l.mu.Unlock()
	select {
	case l.ready <- c:
	case <-l.closed:
		c.Close()
	}
}

func rawChain(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

func (l *authListener) release() {
	l.mu.Lock()
	l.n--
	l.mu.Unlock()
}

// Accept returns the next authenticated connection.
func (l *authListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *authListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.tcp.Close()
	})
	return err
}

// Addr is the listening address.
func (l *authListener) Addr() net.Addr { return l.tcp.Addr() }

// conn returns the authenticated connection with remote address key.
func (l *authListener) conn(key string) *authConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[key]
}

// closeSerial closes every connection of a certificate.
func (l *authListener) closeSerial(serial string) int {
	l.mu.Lock()
	var hit []*authConn
	for _, c := range l.conns {
		if c.identity.Serial == serial {
			hit = append(hit, c)
		}
	}
	l.mu.Unlock()
	for _, c := range hit {
		c.Close()
	}
	return len(hit)
}

func (l *authListener) closeAll() {
	l.mu.Lock()
	all := make([]*authConn, 0, len(l.conns))
	for _, c := range l.conns {
		all = append(all, c)
	}
	l.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// Close closes the connection and forgets its registrations.
func (c *authConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.key] == c {
			delete(c.l.conns, c.key)
		}
		c.l.n--
		c.l.mu.Unlock()
		c.l.e.reg.dropFlow(c.key)
	})
	return c.Conn.Close()
}
