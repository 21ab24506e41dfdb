package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"conclave/internal/signal"
)

// Signaling connection limits.
const (
	wsDialTimeout  = 10 * time.Second
	wsWriteTimeout = 10 * time.Second
	wsOutQueue     = 256
	wsReadLimit    = 4 << 20 // server messages: subscribe offers of large meetings
	// wsBulkQueue holds E2EE messages (announce, key, chat) waiting for
	// their turn: joining a meeting of N people sends N-1 key messages
	// at once.
	wsBulkQueue = 8192
)

// The server accepts 50 messages per second on average per connection,
// in bursts of 200, and drops the others (docs/protocol.md, Transport).
// The writer keeps under that, with a margin for the messages bunching on
// the way.
const (
	wsRate  = 45
	wsBurst = 180
)

// wsConn is one signaling WebSocket: a reader goroutine hands each server
// message to the session loop, a writer goroutine sends queued messages,
// within the server's rate limit: signaling first, E2EE messages (which a
// large meeting sends by the hundred) after.
type wsConn struct {
	c    *websocket.Conn
	out  chan []byte // signaling
	bulk chan []byte // announce, key, chat
	stop chan struct{}
	once sync.Once
}

// dialWS opens the WebSocket of a meeting.
func dialWS(ctx context.Context, m Meeting, hc *http.Client) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, wsDialTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, m.WebSocket, &websocket.DialOptions{
		HTTPClient: hc,
		HTTPHeader: http.Header{"Origin": {m.Origin}},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", m.WebSocket, err)
	}
	c.SetReadLimit(wsReadLimit)
	return c, nil
}

func newWSConn(c *websocket.Conn) *wsConn {
	return &wsConn{c: c, out: make(chan []byte, wsOutQueue), bulk: make(chan []byte, wsBulkQueue), stop: make(chan struct{})}
}

// start runs the reader and writer until the connection ends; onMessage
// and onClose are called on the reader goroutine (onClose once, last).
func (w *wsConn) start(wg *sync.WaitGroup, onMessage func(*signal.Message), onClose func(error)) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.writeLoop()
	}()
	go func() {
		defer wg.Done()
		onClose(w.readLoop(onMessage))
	}()
}

func (w *wsConn) readLoop(onMessage func(*signal.Message)) error {
	defer w.close()
	for {
		typ, data, err := w.c.Read(context.Background())
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			continue
		}
		m := new(signal.Message)
		if err := json.Unmarshal(data, m); err != nil || m.V != signal.Version {
			// A newer server may add fields (docs/protocol.md, "Planned
			// extensions"); only undecodable messages are skipped.
			continue
		}
		onMessage(m)
	}
}

func (w *wsConn) writeLoop() {
	bucket := tokenBucket{rate: wsRate, burst: wsBurst, tokens: wsBurst, last: time.Now()}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var data []byte
		select {
		case <-w.stop:
			return
		case data = <-w.out:
		default:
			select {
			case <-w.stop:
				return
			case data = <-w.out:
			case data = <-w.bulk:
			}
		}
		if data == nil { // closeAfterFlush
			w.close()
			return
		}
		if wait := bucket.take(time.Now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-w.stop:
				return
			case <-timer.C:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), wsWriteTimeout)
		err := w.c.Write(ctx, websocket.MessageText, data)
		cancel()
		if err != nil {
			w.close()
			return
		}
	}
}

// tokenBucket paces messages: rate per second, bursts of burst.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// take spends a token and returns how long to wait before sending, zero
// when one is available now.
func (b *tokenBucket) take(now time.Time) time.Duration {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// send queues a client message. It never blocks: a connection too slow to
// take its messages is closed, and the session reconnects.
func (w *wsConn) send(m *signal.Message) error {
	m.V = signal.Version
	if err := m.Validate(); err != nil {
		return fmt.Errorf("refusing to send an invalid %s message: %w", m.Type, err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	q := w.out
	switch m.Type {
	case signal.TypeAnnounce, signal.TypeKey, signal.TypeChat, signal.TypeVerify:
		q = w.bulk
	}
	select {
	case <-w.stop:
		return errors.New("signaling connection closed")
	case q <- data:
		return nil
	default:
		w.close()
		return errors.New("signaling connection too slow")
	}
}

// closeAfterFlush closes the connection once the signaling messages
// queued so far are written; E2EE messages still waiting are dropped (it
// is used when this participant is given up).
func (w *wsConn) closeAfterFlush() {
	select {
	case w.out <- nil:
	default:
		w.close()
	}
}

// close ends the connection at once; the reader then reports it closed.
// The protocol needs no close handshake: a leaving client has sent leave
// and received bye (after which the server closes) before it gets here.
func (w *wsConn) close() {
	w.once.Do(func() {
		close(w.stop)
		w.c.CloseNow()
	})
}
