package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"conclave/internal/signal"
	"conclave/internal/testutil/testserver"
)

type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func dial(t *testing.T, srv *testserver.Server) *wsClient {
	t.Helper()
	return dialFrom(t, srv, "127.0.0.1")
}

// dialFrom connects from a chosen loopback source address, so that tests
// can play several people on different machines.
func dialFrom(t *testing.T, srv *testserver.Server, source string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := "wss" + strings.TrimPrefix(srv.URL(), "https") + "/ws"
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {srv.URL()}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

// readRaw returns the next message exactly as the server sent it.
func (w *wsClient) readRaw() []byte {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return data
}

func (w *wsClient) sendRaw(s string) {
	w.t.Helper()
	if err := w.c.Write(context.Background(), websocket.MessageText, []byte(s)); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next returns the next message, skipping those whose type is in skip.
func (w *wsClient) next(skip ...string) signal.Message {
	w.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, data, err := w.c.Read(ctx)
		cancel()
		if err != nil {
			w.t.Fatalf("read: %v", err)
		}
		var m signal.Message
		if err := json.Unmarshal(data, &m); err != nil {
			w.t.Fatalf("server sent invalid JSON %q: %v", data, err)
		}
		if m.V != signal.Version {
			w.t.Fatalf("server message without version: %s", data)
		}
		skipped := false
		for _, s := range skip {
			skipped = skipped || m.Type == s
		}
		if !skipped {
			return m
		}
	}
}

// expectError reads past state updates to the next message, which must be
// an error with code.
func (w *wsClient) expectError(code string) signal.Message {
	w.t.Helper()
	m := w.next(signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated,
		signal.TypeParticipantLeft, signal.TypeNotice)
	if m.Type != signal.TypeError || m.Code != code {
		w.t.Fatalf("got %s %s (%s), want error %s", m.Type, m.Code, m.Text, code)
	}
	if m.Text == "" {
		w.t.Errorf("error %s has no message", code)
	}
	return m
}

// expectClosed checks that the server closed the connection with status.
func (w *wsClient) expectClosed(status websocket.StatusCode) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := w.c.Read(ctx)
	if err == nil {
		w.t.Fatalf("connection still open, got %s", data)
	}
	if got := websocket.CloseStatus(err); got != status {
		w.t.Fatalf("closed with %v (%v), want %v", got, err, status)
	}
}

func (w *wsClient) join(room, name string) signal.Message {
	w.t.Helper()
	w.sendRaw(`{"v":1,"type":"join","room":"` + room + `","name":"` + name + `"}`)
	m := w.next()
	if m.Type != signal.TypeWelcome || m.Self == nil || m.Self.ID == "" || m.Resume == "" {
		w.t.Fatalf("join %s: got %+v, want welcome", room, m)
	}
	return m
}

func TestSignalingErrors(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{}, "board")
	c := dial(t, srv)

	c.sendRaw(`not json`)
	c.expectError(signal.CodeBadMessage)
	c.sendRaw(`{"v":1,"type":"publish","sdp":"v=0\r\n"}`)
	m := c.expectError(signal.CodeNotJoined) // out of order
	if m.RefType != signal.TypePublish {
		t.Errorf("error ref = %q, want publish", m.RefType)
	}
	c.sendRaw(`{"v":1,"type":"ping","id":"p1"}`)
	if m := c.next(); m.Type != signal.TypePong || m.ID != "p1" {
		t.Fatalf("ping: got %+v", m)
	}
	c.sendRaw(`{"v":1,"type":"launch"}`)
	c.expectError(signal.CodeUnknownType)

	c.join("board", "Alice")
	c.sendRaw(`{"v":1,"type":"join","room":"board","name":"Alice"}`)
	c.expectError(signal.CodeAlreadyJoined)
	c.sendRaw(`{"v":1,"type":"subscribe-answer","sdp":"v=0\r\n"}`)
	c.expectError(signal.CodeNegotiationFailed) // no offer outstanding
	c.sendRaw(`{"v":1,"type":"publish","sdp":"v=0\r\ngarbage"}`)
	c.expectError(signal.CodeNegotiationFailed)
	c.sendRaw(`{"v":1,"type":"key","to":"nobody","payload":"AA=="}`)
	c.expectError(signal.CodeUnknownParticipant)

	// Still alive and in the meeting after all that.
	c.sendRaw(`{"v":1,"type":"ping"}`)
	if m := c.next(); m.Type != signal.TypePong {
		t.Fatalf("after errors: got %+v, want pong", m)
	}
}

func TestSignalingFatalErrors(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{}, "board")

	c := dial(t, srv)
	c.sendRaw(`{"v":1,"type":"join","room":"nope","name":"Mallory"}`)
	c.expectError(signal.CodeRoomUnavailable)
	c.expectClosed(websocket.StatusPolicyViolation)

	c = dial(t, srv)
	c.sendRaw(`{"v":9,"type":"ping"}`)
	c.expectError(signal.CodeUnsupportedVersion)
	c.expectClosed(websocket.StatusPolicyViolation)

	c = dial(t, srv)
	c.sendRaw(`{"v":1,"type":"ping","id":"` + strings.Repeat("x", signal.MaxMessageSize) + `"}`)
	c.expectError(signal.CodeTooLarge)
	c.expectClosed(websocket.StatusMessageTooBig)

	// The server survived all of it.
	c = dial(t, srv)
	c.join("board", "Alice")
}

func TestSignalingRejectsForeignOrigin(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := "wss" + strings.TrimPrefix(srv.URL(), "https") + "/ws"
	_, resp, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{HTTPClient: hc,
		HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin upgrade: err %v, response %v; want 403", err, resp)
	}
}

// TestRelayStaysInRoom: announcements and key messages reach only their
// audience: key messages only the addressee, nothing crosses rooms.
func TestRelayStaysInRoom(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{}, "a", "b")
	alice, bob, carol, eve := dial(t, srv), dial(t, srv), dial(t, srv), dial(t, srv)
	alice.join("a", "Alice")
	bw := bob.join("a", "Bob")
	cw := carol.join("a", "Carol")
	ew := eve.join("b", "Eve")
	if len(cw.Participants) != 2 || len(ew.Participants) != 0 {
		t.Fatalf("welcome lists: Carol sees %d, Eve sees %d; want 2 and 0", len(cw.Participants), len(ew.Participants))
	}

	// Eve in room b cannot address Bob in room a.
	eve.sendRaw(`{"v":1,"type":"key","to":"` + bw.Self.ID + `","payload":"ZXZl"}`)
	eve.expectError(signal.CodeUnknownParticipant)

	alice.sendRaw(`{"v":1,"type":"key","to":"` + bw.Self.ID + `","payload":"Zm9yYm9i"}`)
	m := bob.next(signal.TypeParticipantJoined)
	if m.Type != signal.TypeKey || m.Payload != "Zm9yYm9i" || m.From == "" {
		t.Fatalf("Bob got %+v, want the key message", m)
	}
	alice.sendRaw(`{"v":1,"type":"announce","payload":"YW5ub3VuY2U="}`)
	for _, c := range []*wsClient{bob, carol} {
		m := c.next(signal.TypeParticipantJoined)
		if m.Type != signal.TypeAnnounce || m.Payload != "YW5ub3VuY2U=" {
			t.Fatalf("got %+v, want Alice's announcement", m)
		}
	}
	// Carol saw the announcement but never the key message addressed to
	// Bob; Eve saw nothing at all. A ping answered proves the queue order.
	for _, c := range []*wsClient{carol, eve} {
		c.sendRaw(`{"v":1,"type":"ping","id":"last"}`)
		if m := c.next(); m.Type != signal.TypePong {
			t.Fatalf("got %+v before pong; it should not have been delivered", m)
		}
	}
}
