package meeting

import (
	"context"
	"errors"
	"sync"
	"time"

	"conclave/internal/signal"
)

// ErrMessageTooLarge is returned by Conn.ReadMessage for a message over
// signal.MaxMessageSize.
var ErrMessageTooLarge = errors.New("message too large")

// CloseStatus is a WebSocket close code.
type CloseStatus int

// Close codes used by the server (RFC 6455, section 7.4.1).
const (
	CloseNormal    CloseStatus = 1000
	CloseGoingAway CloseStatus = 1001
	ClosePolicy    CloseStatus = 1008
	CloseTooLarge  CloseStatus = 1009
)

// Conn is one signaling connection, typically a WebSocket. Implementations
// keep it alive (pings) and make ReadMessage fail when the peer is gone.
type Conn interface {
	// ReadMessage returns the next text message.
	ReadMessage(ctx context.Context) ([]byte, error)
	// WriteMessage sends one text message.
	WriteMessage(ctx context.Context, data []byte) error
	// Close ends the connection with a close code and a short reason.
	Close(status CloseStatus, reason string) error
}

// outQueueSize is how many messages may wait for a slow client before its
// connection is considered lost.
const outQueueSize = 256

// writeTimeout bounds one write to a client.
const writeTimeout = 10 * time.Second

// connection owns the sending side of a Conn: messages are queued and
// written by one goroutine, so that a slow client never blocks a room.
type connection struct {
	conn   Conn
	out    chan []byte
	done   chan struct{}
	ended  chan struct{} // closed when the write loop has closed the Conn
	once   sync.Once
	status CloseStatus
	reason string
}

func newConnection(c Conn) *connection {
	conn := &connection{conn: c, out: make(chan []byte, outQueueSize), done: make(chan struct{}),
		ended: make(chan struct{}), status: CloseNormal}
	go conn.writeLoop()
	return conn
}

// send queues a message; it never blocks. A full queue closes the
// connection: the client is too slow or gone, and will resume.
func (c *connection) send(m *signal.Message) {
	data, err := signal.Encode(m)
	if err != nil {
		return
	}
	select {
	case <-c.done:
	case c.out <- data:
	default:
		c.close(ClosePolicy, "too slow")
	}
}

// close ends the connection after the messages already queued are sent.
func (c *connection) close(status CloseStatus, reason string) {
	c.once.Do(func() {
		c.status, c.reason = status, reason
		close(c.done)
	})
}

func (c *connection) writeLoop() {
	defer close(c.ended)
	for {
		select {
		case data := <-c.out:
			if !c.write(data) {
				c.close(CloseGoingAway, "write failed")
				c.conn.Close(CloseGoingAway, "write failed")
				return
			}
		case <-c.done:
			// Flush what was queued before the close (a final error or bye).
			for {
				select {
				case data := <-c.out:
					if !c.write(data) {
						c.conn.Close(c.status, c.reason)
						return
					}
				default:
					c.conn.Close(c.status, c.reason)
					return
				}
			}
		}
	}
}

func (c *connection) write(data []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return c.conn.WriteMessage(ctx, data) == nil
}
