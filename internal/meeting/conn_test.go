package meeting

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/signal"
)

// stalledConn is a client that reads nothing until released.
type stalledConn struct {
	release chan struct{}
	mu      sync.Mutex
	got     []string
	closed  chan struct{}
	status  CloseStatus
	reason  string
}

func newStalledConn() *stalledConn {
	return &stalledConn{release: make(chan struct{}), closed: make(chan struct{})}
}

func (s *stalledConn) ReadMessage(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stalledConn) WriteMessage(ctx context.Context, data []byte) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.got = append(s.got, string(data))
	s.mu.Unlock()
	return nil
}

func (s *stalledConn) Close(status CloseStatus, reason string) error {
	s.status, s.reason = status, reason
	close(s.closed)
	return nil
}

// announcement is an announce message of about the size browsers send.
func announcement(i int) *signal.Message {
	body := strings.Repeat(string(rune('a'+i%26)), 1100)
	return &signal.Message{Type: signal.TypeAnnounce, From: "p" + string(rune('A'+i%26)), Payload: base64.StdEncoding.EncodeToString([]byte(body))}
}

// A newcomer to a meeting of 1000 is sent the welcome and 1000
// announcements at once, before it has read any: all of them arrive, in
// order, and the connection stays open.
func TestConnectionQueuesABigWelcome(t *testing.T) {
	sc := newStalledConn()
	c := newConnection(sc)
	const n = 1000
	for i := range n {
		c.send(announcement(i))
	}
	close(sc.release)
	c.close(CloseNormal, "")
	<-sc.closed
	if sc.status != CloseNormal {
		t.Fatalf("closed with %d %q, want a normal close after the queue", sc.status, sc.reason)
	}
	if len(sc.got) != n {
		t.Fatalf("the client got %d of %d messages", len(sc.got), n)
	}
	for i, data := range sc.got {
		var m signal.Message
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatal(err)
		}
		if want := announcement(i).Payload; m.Payload != want {
			t.Fatalf("message %d out of order", i)
		}
	}
}

// A client that reads nothing while more than maxQueuedBytes pile up is
// given up as too slow.
func TestConnectionGivesUpASlowClient(t *testing.T) {
	sc := newStalledConn()
	c := newConnection(sc)
	size := len(mustEncode(t, announcement(0)))
	for i := 0; i <= maxQueuedBytes/size+1; i++ {
		c.send(announcement(i))
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("a connection with more than maxQueuedBytes queued was not closed")
	}
	close(sc.release)
	<-sc.closed
	if sc.status != ClosePolicy || sc.reason != "too slow" {
		t.Fatalf("closed with %d %q, want %d \"too slow\"", sc.status, sc.reason, ClosePolicy)
	}
}

func mustEncode(t *testing.T, m *signal.Message) []byte {
	t.Helper()
	data, err := signal.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
