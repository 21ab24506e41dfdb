package secure

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"conclave/internal/pki"
	"conclave/internal/signal"
)

// proxy is a malicious relay between one client and the server: it
// accepts the client's WebSocket, opens one to the server, and forwards
// messages both ways, letting the test rewrite, drop, inject or replay
// them. Media does not go through it (the client reaches the SFU
// directly): the server's own view of media is the tap.
type proxy struct {
	t     *testing.T
	srv   *testServer
	ts    *httptest.Server
	roots *x509.CertPool // trusts the proxy's certificate

	mu sync.Mutex
	// toClient, when set, decides what the client gets instead of m (nil
	// or empty: dropped); it runs on the proxy's goroutine.
	toClient func(m *signal.Message) []*signal.Message
	client   *websocket.Conn
	meeting  string           // from the welcome the client got
	sent     []signal.Message // every message the client sent
}

func newProxy(t *testing.T, srv *testServer) *proxy {
	t.Helper()
	p := &proxy{t: t, srv: srv}
	p.ts = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.ts.EnableHTTP2 = false
	p.ts.StartTLS()
	t.Cleanup(p.ts.Close)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.ts.Certificate())
	return p
}

// URL is the meeting base URL through the proxy.
func (p *proxy) URL() string { return p.ts.URL }

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ws" {
		http.NotFound(w, r)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(p.srv.roots)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(p.srv.URL(), "https")+"/ws",
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {p.srv.URL()}}})
	if err != nil {
		p.t.Errorf("proxy: dial the server: %v", err)
		return
	}
	defer s.CloseNow()
	s.SetReadLimit(4 << 20)
	p.mu.Lock()
	p.client = c
	p.mu.Unlock()
	go func() { // client -> server: recorded, forwarded unchanged
		defer cancel()
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var m signal.Message
			if json.Unmarshal(data, &m) == nil {
				p.mu.Lock()
				p.sent = append(p.sent, m)
				p.mu.Unlock()
			}
			if s.Write(ctx, websocket.MessageText, data) != nil {
				return
			}
		}
	}()
	for { // server -> client, through toClient
		_, data, err := s.Read(ctx)
		if err != nil {
			return
		}
		var m signal.Message
		if err := json.Unmarshal(data, &m); err != nil {
			continue
		}
		p.mu.Lock()
		if m.Type == signal.TypeWelcome {
			p.meeting = m.Meeting
		}
		rewrite := p.toClient
		p.mu.Unlock()
		out := []*signal.Message{&m}
		if rewrite != nil {
			out = rewrite(&m)
		}
		for _, o := range out {
			if p.write(c, o) != nil {
				return
			}
		}
	}
}

func (p *proxy) write(c *websocket.Conn, m *signal.Message) error {
	data, err := signal.Encode(m)
	if err != nil {
		p.t.Errorf("proxy: encode: %v", err)
		return err
	}
	return c.Write(context.Background(), websocket.MessageText, data)
}

// inject sends m to the client as if the server had.
func (p *proxy) inject(m *signal.Message) {
	p.mu.Lock()
	c := p.client
	p.mu.Unlock()
	if c == nil {
		p.t.Fatal("proxy: no client yet")
	}
	if err := p.write(c, m); err != nil {
		p.t.Fatalf("proxy: inject: %v", err)
	}
}

func (p *proxy) setRewrite(f func(m *signal.Message) []*signal.Message) {
	p.mu.Lock()
	p.toClient = f
	p.mu.Unlock()
}

func (p *proxy) meetingID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meeting
}

// keysSentTo returns the payloads of the `key` messages the client sent
// to participant to.
func (p *proxy) keysSentTo(to string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, m := range p.sent {
		if m.Type == signal.TypeKey && m.To == to {
			b, _ := base64.StdEncoding.DecodeString(m.Payload)
			out = append(out, b)
		}
	}
	return out
}
