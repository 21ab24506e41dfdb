package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"conclave/internal/client/secure"
	"conclave/internal/clock"
	"conclave/internal/logmirror"
	"conclave/internal/nodeconf"
	"conclave/internal/web"
)

// logFollowInterval is how often a conference node's copy of the E2EE
// transparency log asks the management node for its latest checkpoint
// (the management node reads its store as often).
const logFollowInterval = 2 * time.Second

// logProxy answers a conference node's requests for the E2EE
// transparency log (/api/e2ee/log/...). While the management node, which
// keeps the log, answers, it passes them on to it, trusting the
// authority of its web certificate that the configuration carries: its
// answers are the freshest (a credential issued a second ago is already
// in them). When the management node cannot be reached (the node's copy
// could not follow it at its last try, or this request fails or gets a
// 5xx), or when the copy refused its log at the last try (forked,
// rewritten, badly signed), the node answers from its verified copy of
// the log (package logmirror) in the same JSON; without a copy, 503.
type logProxy struct {
	conf   *nodeconf.Cache
	mirror *logmirror.Mirror
	local  http.Handler // the copy's answers
	log    *slog.Logger
	stop   func() // ends follow

	mu     sync.Mutex
	key    string // URL and CA the proxy below was made for
	proxy  *httputil.ReverseProxy
	client *http.Client // the copy's, over the same transport
}

// newLogProxy opens the node's copy of the log in dir.
func newLogProxy(conf *nodeconf.Cache, dir string, log *slog.Logger) (*logProxy, error) {
	m, err := logmirror.Open(dir, conf.LogVerifierKey(), log)
	if err != nil {
		return nil, err
	}
	conf.OnChange(m.Kick)
	return &logProxy{conf: conf, mirror: m, local: web.LogHandler(m, log), log: log}, nil
}

// follow keeps the copy up to date until close.
func (p *logProxy) follow(clk clock.Clock) {
	p.stop = p.mirror.Run(clk, logFollowInterval, func() (secure.LogAPI, string, bool) {
		base, client := p.upstream()
		if client == nil {
			return nil, "", false
		}
		return secure.HTTPLog{Client: client, Base: base}, p.conf.LogVerifierKey(), true
	})
}

// close stops following.
func (p *logProxy) close() {
	if p.stop != nil {
		p.stop()
	}
}

// LogCopy reports the node's copy of the E2EE transparency log: its
// number of records, whether it has a checkpoint to serve, and whether
// it refused what the management node sent at its last try.
func (n *Node) LogCopy() (size int64, ready, refused bool) {
	return n.logs.mirror.Size(), n.logs.mirror.Ready(), n.logs.mirror.Refused()
}

// bodyKey holds a request's body in its context, for the copy to answer
// after the proxy read it.
type bodyKey struct{}

// errUpstream5xx turns a management node's server error into the copy's
// answer.
var errUpstream5xx = errors.New("the management node answered a server error")

func (p *logProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	proxy := p.current()
	if proxy == nil || p.mirror.Down() || p.mirror.Refused() {
		p.serveCopy(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeLogError(w, http.StatusRequestEntityTooLarge, "too-large", "The request body is too large.")
			return
		}
		writeLogError(w, http.StatusBadRequest, "bad-request", "The request body could not be read.")
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	proxy.ServeHTTP(w, r)
}

// serveCopy answers from the node's copy of the log.
func (p *logProxy) serveCopy(w http.ResponseWriter, r *http.Request) {
	if !p.mirror.Ready() {
		unavailable(w)
		return
	}
	if body, ok := r.Context().Value(bodyKey{}).([]byte); ok {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	p.local.ServeHTTP(w, r)
}

func unavailable(w http.ResponseWriter) {
	writeLogError(w, http.StatusServiceUnavailable, "log-unavailable",
		"The management node, which keeps the transparency log, cannot be reached from this node now, and this node has no copy of the log yet.")
}

func writeLogError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"error":{"code":"` + code + `","message":"` + msg + `"}}`))
}

// upstream returns the management node's base URL and a client for it,
// nil while the configuration names none.
func (p *logProxy) upstream() (string, *http.Client) {
	if p.current() == nil {
		return "", nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conf.Management().URL, p.client
}

// current returns the proxy for the management node the configuration
// names, made again when that changes.
func (p *logProxy) current() *httputil.ReverseProxy {
	m := p.conf.Management()
	if m.URL == "" {
		return nil
	}
	key := m.URL + string(m.CA)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proxy != nil && p.key == key {
		return p.proxy
	}
	target, err := url.Parse(m.URL)
	if err != nil || target.Scheme != "https" {
		return nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if len(m.CA) > 0 {
		if ca, err := x509.ParseCertificate(m.CA); err == nil {
			roots.AddCert(ca)
		}
	}
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		// A management node that does not answer is soon given up for
		// the copy.
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		IdleConnTimeout:       time.Minute,
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			// Only what the log needs: no cookies, no browser origin.
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Origin")
			pr.Out.Header.Del("Referer")
		},
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 500 {
				return errUpstream5xx
			}
			resp.Header.Del("Set-Cookie")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.Debug("E2EE log: the management node did not answer; this node answers from its copy", "err", err)
			p.serveCopy(w, r)
		},
	}
	p.key, p.proxy = key, proxy
	p.client = &http.Client{Transport: transport, Timeout: 30 * time.Second}
	return proxy
}
