// Package relay is a malicious relay for tests: it sits between a client
// and a Conclave server, passes web pages and API calls through, and hands
// every signaling message, in both directions, to the test, which may
// rewrite, drop, replay or inject messages. It plays the server operator or
// the compromised node of the E2EE threat model.
package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// Direction says which way a message travels.
type Direction int

// Directions of signaling messages.
const (
	ToServer Direction = iota
	ToClient
)

// Message is a decoded signaling message; the relay re-encodes whatever
// the rewrite returns.
type Message map[string]any

// Rewrite sees every message of one connection and returns the messages to
// send on in its place: none drops it, several inject. It is called on one
// goroutine per direction.
type Rewrite func(conn *Conn, dir Direction, m Message) []Message

// Relay is a running relay.
type Relay struct {
	URL string // base URL the client should use instead of the server's

	target  *url.URL
	rewrite Rewrite
	mu      sync.Mutex
	conns   []*Conn
}

// Conn is one relayed signaling connection.
type Conn struct {
	client, server *websocket.Conn
	mu             sync.Mutex
}

// Inject sends m on this connection toward dir, outside any rewrite.
func (c *Conn) Inject(ctx context.Context, dir Direction, m Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if dir == ToClient {
		return c.client.Write(ctx, websocket.MessageText, data)
	}
	return c.server.Write(ctx, websocket.MessageText, data)
}

// Start runs a relay in front of serverURL (https://host:port), serving TLS
// with cert, until the test ends.
func Start(t testing.TB, serverURL string, cert tls.Certificate, rewrite Rewrite) *Relay {
	t.Helper()
	target, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{target: target, rewrite: rewrite}
	insecure := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = insecure
	mux := http.NewServeMux()
	mux.Handle("/", proxy)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, req *http.Request) { r.relayWS(t, w, req, insecure) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	r.URL = "https://" + ln.Addr().String()
	return r
}

func (r *Relay) relayWS(t testing.TB, w http.ResponseWriter, req *http.Request, tr *http.Transport) {
	client, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	client.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := http.Header{"Origin": {r.target.Scheme + "://" + r.target.Host}}
	if c := req.Header.Get("Cookie"); c != "" {
		h.Set("Cookie", c)
	}
	wsURL := "wss://" + r.target.Host + "/ws"
	server, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h})
	if err != nil {
		client.Close(websocket.StatusInternalError, "relay cannot reach the server")
		return
	}
	server.SetReadLimit(1 << 20)
	conn := &Conn{client: client, server: server}
	r.mu.Lock()
	r.conns = append(r.conns, conn)
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	go r.pump(ctx, conn, server, client, ToClient, done)
	go r.pump(ctx, conn, client, server, ToServer, done)
	<-done
	client.CloseNow()
	server.CloseNow()
}

func (r *Relay) pump(ctx context.Context, conn *Conn, from, to *websocket.Conn, dir Direction, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	for {
		_, data, err := from.Read(ctx)
		if err != nil {
			return
		}
		var m Message
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		out := []Message{m}
		if r.rewrite != nil {
			out = r.rewrite(conn, dir, m)
		}
		for _, o := range out {
			b, err := json.Marshal(o)
			if err != nil {
				continue
			}
			conn.mu.Lock()
			err = to.Write(ctx, websocket.MessageText, b)
			conn.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// Conns returns the signaling connections relayed so far, oldest first.
func (r *Relay) Conns() []*Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Conn(nil), r.conns...)
}

// Type returns a message's type.
func (m Message) Type() string { s, _ := m["type"].(string); return s }

// String returns a string field.
func (m Message) String(k string) string { s, _ := m[k].(string); return s }

// HostOf returns host:port of a URL, for logs.
func HostOf(u string) string { return strings.TrimPrefix(u, "https://") }
