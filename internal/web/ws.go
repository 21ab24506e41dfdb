package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/coder/websocket"

	"conclave/internal/clock"
	"conclave/internal/meeting"
	"conclave/internal/signal"
)

// Keepalive timing of signaling WebSockets (docs/protocol.md, Transport).
const (
	pingInterval = 15 * time.Second
	pingTimeout  = 45 * time.Second
)

// wsConn adapts a WebSocket to meeting.Conn.
type wsConn struct {
	c        *websocket.Conn
	cancel   context.CancelFunc
	stopJoin func() bool // the deadline to join, until Joined
}

// Joined tells the connection it has joined a meeting, which ends its
// deadline to join.
func (w *wsConn) Joined() {
	if w.stopJoin != nil {
		w.stopJoin()
	}
}

func (w *wsConn) ReadMessage(ctx context.Context) ([]byte, error) {
	typ, r, err := w.c.Reader(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		// Binary frames are not part of the protocol; report them as a
		// malformed message rather than dropping the connection.
		_, _ = io.Copy(io.Discard, io.LimitReader(r, signal.MaxMessageSize+1))
		return []byte{0xff}, nil
	}
	data, err := io.ReadAll(io.LimitReader(r, signal.MaxMessageSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > signal.MaxMessageSize {
		return nil, meeting.ErrMessageTooLarge
	}
	return data, nil
}

func (w *wsConn) WriteMessage(ctx context.Context, data []byte) error {
	return w.c.Write(ctx, websocket.MessageText, data)
}

func (w *wsConn) Close(status meeting.CloseStatus, reason string) error {
	defer w.cancel()
	return w.c.Close(websocket.StatusCode(status), reason)
}

// keepalive pings the client and closes the connection when it stops
// answering, which makes the pending read fail.
func (w *wsConn) keepalive(ctx context.Context) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := w.c.Ping(pctx)
			cancel()
			if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
				w.c.CloseNow()
				return
			}
		}
	}
}

// meetingClient identifies who opens a signaling connection: the address,
// and the account when the request carries a valid session cookie (of an
// enabled account: Lookup refuses the others). An account that must
// change its password (reset, or expired) enters as nobody in particular:
// it gets no more than a guest until the password is changed.
func (s *Server) meetingClient(r *http.Request) meeting.Client {
	c := meeting.Client{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Addr = ap.Addr().Unmap()
	}
	if ck, err := r.Cookie(sessionCookie); err == nil && s.Sessions != nil {
		if sess, u, err := s.Sessions.Lookup(r.Context(), ck.Value); err == nil && sess.Plane == s.Plane.name() && !s.Accounts.State(u).MustChangePassword {
			c.Account = &meeting.Account{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName}
		}
	}
	return c
}

// handleWS upgrades a meeting signaling connection. The WebSocket library
// refuses an Origin that names another host.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.peerOriginPatterns()})
	if err != nil {
		return // Accept has answered the request
	}
	// A hard ceiling above the protocol limit: messages between the two
	// get a protocol error, larger ones a bare 1009 close.
	c.SetReadLimit(4 * signal.MaxMessageSize)
	ctx, cancel := context.WithCancel(s.baseCtx)
	conn := &wsConn{c: c, cancel: cancel}
	// A connection that has not joined (or been admitted to wait) within
	// JoinTimeout is closed: an idle socket must not be held for free.
	conn.stopJoin = clock.Or(s.Clock).AfterFunc(s.joinTimeout(), func() {
		// Close waits for the client's answer; not on the clock's
		// goroutine.
		go func() {
			c.Close(websocket.StatusPolicyViolation, "join timeout")
			cancel()
		}()
	})
	go conn.keepalive(ctx)
	s.Meetings.Serve(ctx, conn, s.meetingClient(r))
	conn.stopJoin()
	cancel()
	c.CloseNow()
}

// DefaultJoinTimeout is how long a signaling connection may stay open
// before it joins.
const DefaultJoinTimeout = 10 * time.Second

func (s *Server) joinTimeout() time.Duration {
	if s.JoinTimeout > 0 {
		return s.JoinTimeout
	}
	return DefaultJoinTimeout
}
