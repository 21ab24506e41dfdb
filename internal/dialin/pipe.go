package dialin

import (
	"context"
	"errors"
	"sync"

	"conclave/internal/meeting"
)

// pipe is the gateway's signaling connection to the room, in this
// process: the room's side is a meeting.Conn, the gateway's side reads
// what the room writes.
type pipe struct {
	in     chan []byte // gateway -> room
	out    chan []byte // room -> gateway
	closed chan struct{}
	once   sync.Once
}

var errPipeClosed = errors.New("dial-in connection closed")

func newPipe() *pipe {
	return &pipe{in: make(chan []byte, 256), out: make(chan []byte, 1024), closed: make(chan struct{})}
}

// ReadMessage implements meeting.Conn: the gateway's next message.
func (p *pipe) ReadMessage(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.in:
		return b, nil
	case <-p.closed:
		return nil, errPipeClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WriteMessage implements meeting.Conn: a message to the gateway.
func (p *pipe) WriteMessage(ctx context.Context, data []byte) error {
	select {
	case p.out <- data:
		return nil
	case <-p.closed:
		return errPipeClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements meeting.Conn.
func (p *pipe) Close(meeting.CloseStatus, string) error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// toServer hands a message to the room; false once the connection is
// closed.
func (p *pipe) toServer(ctx context.Context, data []byte) bool {
	select {
	case p.in <- data:
		return true
	case <-p.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

// fromServer returns the room's next message; false once the connection
// is closed and everything written before was read.
func (p *pipe) fromServer() ([]byte, bool) {
	select {
	case b := <-p.out:
		return b, true
	default:
	}
	select {
	case b := <-p.out:
		return b, true
	case <-p.closed:
		select {
		case b := <-p.out:
			return b, true
		default:
			return nil, false
		}
	}
}
