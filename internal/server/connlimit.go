package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"conclave/internal/guard"
)

// DefaultMaxConnsPerAddress bounds the open connections of one client
// address (an IPv6 /64 counts as one, as for the break-in rules): enough
// for an office behind one NAT address, far too few to exhaust the
// server's file descriptors or memory.
const DefaultMaxConnsPerAddress = 128

// limitListener closes, at once and before the TLS handshake, a new
// connection whose source already holds max open ones. Addresses on the
// allow list are not limited.
type limitListener struct {
	net.Listener
	max   int
	guard *guard.Guard
	log   *slog.Logger

	mu   sync.Mutex
	open map[netip.Prefix]int
}

func newLimitListener(ln net.Listener, max int, g *guard.Guard, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: max, guard: g, log: log, open: map[netip.Prefix]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return c, nil
		}
		addr := ap.Addr().Unmap()
		if l.guard.Allowed(addr) {
			return c, nil
		}
		src := l.guard.Source(addr)
		l.mu.Lock()
		if l.open[src] >= l.max {
			l.mu.Unlock()
			l.log.Debug("connection refused: too many from one address", "remote", addr, "max", l.max)
			c.Close()
			continue
		}
		l.open[src]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() {
			l.mu.Lock()
			if l.open[src]--; l.open[src] <= 0 {
				delete(l.open, src)
			}
			l.mu.Unlock()
		}}, nil
	}
}

// countedConn gives its place back once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
