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

// maxQueuedBytes is how much may wait for a slow client before its
// connection is considered lost. It is counted in bytes, not messages: a
// newcomer to a meeting of N is sent the welcome and N announcements at
// once (about 1.5 KiB each), which must fit, while a client that stopped
// reading must not hold the server's memory for long.
const maxQueuedBytes = 4 << 20

// writeTimeout bounds one write to a client.
const writeTimeout = 10 * time.Second

// connection owns the sending side of a Conn: messages are queued and
// written by one goroutine, so that a slow client never blocks a room.
type connection struct {
	conn  Conn
	wake  chan struct{} // a message was queued, or done closed
	done  chan struct{}
	ended chan struct{} // closed when the write loop has closed the Conn
	once  sync.Once

	mu     sync.Mutex // guards queue, queued, status, reason
	queue  [][]byte
	queued int // bytes queued and not yet written (in queue or being written)
	status CloseStatus
	reason string
}

func newConnection(c Conn) *connection {
	conn := &connection{conn: c, wake: make(chan struct{}, 1), done: make(chan struct{}),
		ended: make(chan struct{}), status: CloseNormal}
	go conn.writeLoop()
	return conn
}

// send queues a message; it never blocks. A queue over maxQueuedBytes
// closes the connection: the client is too slow or gone, and will resume.
func (c *connection) send(m *signal.Message) {
	data, err := signal.Encode(m)
	if err != nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	c.mu.Lock()
	if c.queued+len(data) > maxQueuedBytes {
		c.mu.Unlock()
		c.close(ClosePolicy, "too slow")
		return
	}
	c.queue = append(c.queue, data)
	c.queued += len(data)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close ends the connection after the messages already queued are sent.
func (c *connection) close(status CloseStatus, reason string) {
	c.once.Do(func() {
		c.mu.Lock()
		c.status, c.reason = status, reason
		c.mu.Unlock()
		close(c.done)
	})
}

// take returns the messages queued so far, oldest first; spare becomes
// the new queue.
func (c *connection) take(spare [][]byte) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.queue
	c.queue = spare[:0]
	return out
}

// written accounts for a message written.
func (c *connection) written(n int) {
	c.mu.Lock()
	c.queued -= n
	c.mu.Unlock()
}

func (c *connection) writeLoop() {
	defer close(c.ended)
	var batch [][]byte
	for {
		closing := false
		select {
		case <-c.wake:
		case <-c.done:
			closing = true // flush what was queued before the close (a final error or bye)
		}
		batch = c.take(batch)
		for i, data := range batch {
			batch[i] = nil
			if !c.write(data) {
				if !closing {
					c.close(CloseGoingAway, "write failed")
				}
				c.closeConn()
				return
			}
			c.written(len(data))
		}
		if closing {
			c.closeConn()
			return
		}
	}
}

// closeConn closes the Conn with the status given to close.
func (c *connection) closeConn() {
	c.mu.Lock()
	status, reason := c.status, c.reason
	c.mu.Unlock()
	c.conn.Close(status, reason)
}

func (c *connection) write(data []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return c.conn.WriteMessage(ctx, data) == nil
}
