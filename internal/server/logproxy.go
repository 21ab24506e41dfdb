package server

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"conclave/internal/nodeconf"
)

// logProxy passes a conference node's requests for the E2EE transparency
// log (/api/e2ee/log/...) on to the management node, which keeps the
// log, trusting the authority of its web certificate that the
// configuration carries. With the management node down, it answers 503:
// the browsers keep the checkpoints they verified before.
type logProxy struct {
	conf *nodeconf.Cache

	mu    sync.Mutex
	key   string // URL and CA the proxy below was made for
	proxy *httputil.ReverseProxy
}

func (p *logProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	proxy := p.current()
	if proxy == nil {
		unavailable(w)
		return
	}
	proxy.ServeHTTP(w, r)
}

func unavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"error":{"code":"log-unavailable","message":"The management node, which keeps the transparency log, cannot be reached from this node now."}}`))
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
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			// Only what the log needs: no cookies, no browser origin.
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Origin")
			pr.Out.Header.Del("Referer")
		},
		Transport: &http.Transport{
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       time.Minute,
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Set-Cookie")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { unavailable(w) },
	}
	p.key, p.proxy = key, proxy
	return proxy
}
