package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ALPN is the application protocol name of TURN over TLS (RFC 7443).
const ALPN = "stun.turn"

// HandshakeTimeout bounds a connection's TLS handshake and, when ALPN
// does not tell, the wait for its first byte.
const HandshakeTimeout = 10 * time.Second

// Demux shares the HTTPS port between the web server and TURN over TLS.
// It accepts TCP connections, completes their TLS handshake with the
// HTTPS listener's own configuration, and hands each connection to one
// of two listeners:
//
//   - by ALPN when the client offered it: "h2" and "http/1.1" go to HTTP,
//     "stun.turn" (RFC 7443) to TURN;
//   - otherwise by the first byte the client sends: a TURN client starts
//     with a STUN request, whose first byte is below 0x40 (the two top
//     bits of a STUN message are zero), while an HTTP request starts with
//     a method name in capital letters (0x41 and above).
//
// Browsers offer ALPN for HTTPS but not for TURN, so a browser's TURN
// connection is told by its first byte. Connections handed to HTTP keep
// their *tls.Conn when ALPN decided, so HTTP/2 works as on a plain TLS
// listener; those decided by the first byte arrive as a net.Conn whose
// TLS state [ConnContext] and [WithTLSState] give back to the handler.
type Demux struct {
	ln   net.Listener
	cfg  *tls.Config
	log  *slog.Logger
	http *subListener
	turn *subListener

	start  sync.Once
	mu     sync.Mutex
	closed bool
}

// NewDemux shares ln between HTTP and TURN over TLS. With turn false
// every connection goes to HTTP and those that start like TURN are
// closed. SetTLSConfig gives the TLS configuration of both before the
// HTTP server starts.
//
// Connections are accepted from the first Accept on the HTTP listener
// on: an http.Server completes its TLS configuration (HTTP/2) when it
// starts serving, before its first Accept, and no handshake may read the
// configuration while it does.
func NewDemux(ln net.Listener, turn bool, log *slog.Logger) *Demux {
	if log == nil {
		log = slog.Default()
	}
	d := &Demux{ln: ln, log: log}
	d.http = newSubListener(d)
	d.turn = newSubListener(d)
	if !turn {
		d.turn.Close()
	}
	return d
}

// SetTLSConfig sets the TLS configuration of HTTPS and TURN over TLS:
// the HTTP server's own (http.Server.TLSConfig). It must be called before
// the HTTP server starts.
func (d *Demux) SetTLSConfig(cfg *tls.Config) { d.cfg = cfg }

// HTTP is the listener of HTTPS connections.
func (d *Demux) HTTP() net.Listener { return d.http }

// TURN is the listener of TURN-over-TLS connections (closed when TURN is
// off).
func (d *Demux) TURN() net.Listener { return d.turn }

// Addr is the shared listener's address.
func (d *Demux) Addr() net.Addr { return d.ln.Addr() }

// Close closes the shared listener and both sub-listeners.
func (d *Demux) Close() error {
	d.http.Close()
	d.turn.Close()
	return d.closeShared()
}

func (d *Demux) closeShared() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if err := d.ln.Close(); !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// subClosed closes the shared listener once neither sub-listener
// accepts any more.
func (d *Demux) subClosed() {
	if d.http.isClosed() && d.turn.isClosed() {
		d.closeShared()
	}
}

func (d *Demux) run() {
	var delay time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				d.http.Close()
				d.turn.Close()
				return
			}
			// Out of descriptors and the like: wait a little, as
			// net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else {
				delay = min(2*delay, time.Second)
			}
			d.log.Warn("HTTPS listener: accept failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go d.route(c)
	}
}

// route completes the TLS handshake of c and hands it over.
func (d *Demux) route(c net.Conn) {
	if d.cfg == nil {
		d.log.Error("HTTPS listener without a TLS configuration: connection closed")
		c.Close()
		return
	}
	tc := tls.Server(c, d.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		d.log.Debug("TLS handshake failed", "client", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case "h2", "http/1.1":
		d.http.deliver(tc)
		return
	case ALPN:
		d.turn.deliver(tc)
		return
	}
	tc.SetReadDeadline(time.Now().Add(HandshakeTimeout))
	var first [1]byte
	if _, err := io.ReadFull(tc, first[:]); err != nil {
		d.log.Debug("HTTPS connection closed before its first byte", "client", c.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	tc.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: tc, tls: tc, first: first[0], unread: true}
	if IsTURN(first[0]) {
		d.turn.deliver(pc)
	} else {
		d.http.deliver(pc)
	}
}

// IsTURN reports whether a connection whose first byte is b carries TURN
// (a STUN message) rather than HTTP.
func IsTURN(b byte) bool { return b < 0x40 }

// peekedConn is a TLS connection whose first byte was read already.
type peekedConn struct {
	net.Conn
	tls    *tls.Conn
	mu     sync.Mutex
	first  byte
	unread bool
}

// Read returns the byte read already first, alone (a short read, as a
// stream may give), then reads on.
func (c *peekedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.unread && len(p) > 0 {
		p[0] = c.first
		c.unread = false
		c.mu.Unlock()
		return 1, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// ConnectionState returns the TLS state of the connection.
func (c *peekedConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// subListener is one side of a Demux.
type subListener struct {
	d     *Demux
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newSubListener(d *Demux) *subListener {
	return &subListener{d: d, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *subListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept implements net.Listener.
func (l *subListener) Accept() (net.Conn, error) {
	if l == l.d.http {
		l.d.start.Do(func() { go l.d.run() })
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *subListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		go l.d.subClosed()
	})
	return nil
}

func (l *subListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Addr implements net.Listener.
func (l *subListener) Addr() net.Addr { return l.d.ln.Addr() }

type tlsStateKey struct{}

// ConnContext is an http.Server ConnContext that keeps the TLS state of
// connections the Demux handed over as plain net.Conns.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peekedConn); ok {
		st := pc.ConnectionState()
		return context.WithValue(ctx, tlsStateKey{}, &st)
	}
	return ctx
}

// WithTLSState fills in r.TLS, which net/http leaves nil for connections
// that are not a *tls.Conn, from ConnContext.
func WithTLSState(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r.TLS = st
			}
		}
		h.ServeHTTP(w, r)
	})
}
