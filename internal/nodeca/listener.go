package nodeca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Listener is the management node's cluster listener: nodes enrol on it
// with a token, and renew their certificates with their current one. It
// speaks only TLS 1.3 with TLS_AES_256_GCM_SHA384 on P-384; a client that
// presents a certificate the cluster CA did not issue, or a revoked one,
// is refused during the handshake.
type Listener struct {
	ca       *CA
	log      *slog.Logger
	ln       net.Listener
	srv      *http.Server
	cert     atomic.Pointer[tls.Certificate]
	done     chan error
	enrolled atomic.Pointer[func()]
}

// Listen opens the cluster listener on addr with a certificate for hosts
// issued by ca.
func Listen(ca *CA, addr string, hosts []string, log *slog.Logger) (*Listener, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if len(hosts) > 0 {
		port := ln.Addr().(*net.TCPAddr).Port
		ca.SetCRLURL("https://" + net.JoinHostPort(hosts[0], strconv.Itoa(port)) + CRLPath)
	}
	leaf, err := ca.IssueSelf(&key.PublicKey, hosts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	l := &Listener{ca: ca, log: log}
	l.cert.Store(&tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf})
	tr := Trust{Roots: ca.Pool(), Revoked: ca.Revoked, Roles: []string{RoleConference, RoleEdge}}
	conf := ServerConfig(l.cert.Load, tr, tls.VerifyClientCertIfGiven)
	conf.NextProtos = []string{"http/1.1"}
	l.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+EnrolPath, l.enrol)
	mux.HandleFunc("POST "+RenewPath, l.renew)
	mux.HandleFunc("GET "+CRLPath, l.crl)
	l.srv = &http.Server{Handler: mux, TLSConfig: conf, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	l.done = make(chan error, 1)
	go func() { l.done <- l.srv.Serve(tls.NewListener(ln, conf)) }()
	return l, nil
}

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Certificate is the management node's own certificate (the cluster
// listener's, also used on the bus and the node-to-node links).
func (l *Listener) Certificate() *tls.Certificate { return l.cert.Load() }

// Close stops the listener.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.srv.Shutdown(ctx)
	<-l.done
	return err
}

func (l *Listener) read(w http.ResponseWriter, r *http.Request) (enrolRequest, bool) {
	var req enrolRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, enrolResponse{Error: "the request is not valid JSON"})
		return req, false
	}
	return req, true
}

func (l *Listener) enrol(w http.ResponseWriter, r *http.Request) {
	req, ok := l.read(w, r)
	if !ok {
		return
	}
	iss, err := l.ca.Enrol(r.Context(), req.Token, req.CSR)
	if err != nil {
		l.log.Warn("node enrolment refused", "remote", r.RemoteAddr, "err", err)
		status := http.StatusBadRequest
		if errors.Is(err, ErrBadToken) {
			status = http.StatusForbidden
		}
		reply(w, status, enrolResponse{Error: err.Error()})
		return
	}
	l.log.Info("node enrolled", "node", iss.Node.Name, "role", iss.Node.Role, "serial", iss.Serial, "remote", r.RemoteAddr)
	reply(w, http.StatusOK, enrolResponse{Cert: pemCert(iss.DER), CA: l.ca.pem})
	if f := l.enrolled.Load(); f != nil {
		(*f)()
	}
}

// OnEnrol makes f run after each enrolment (the management node publishes
// the node directory at once, so that a new node applies its labels
// without waiting for the next round).
func (l *Listener) OnEnrol(f func()) { l.enrolled.Store(&f) }

func (l *Listener) renew(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		reply(w, http.StatusUnauthorized, enrolResponse{Error: "renewal needs the node's current certificate"})
		return
	}
	req, ok := l.read(w, r)
	if !ok {
		return
	}
	iss, err := l.ca.Renew(r.Context(), r.TLS.VerifiedChains[0][0], req.CSR)
	if err != nil {
		l.log.Warn("node certificate renewal refused", "remote", r.RemoteAddr, "err", err)
		reply(w, http.StatusForbidden, enrolResponse{Error: err.Error()})
		return
	}
	l.log.Info("node certificate renewed", "node", iss.Node.Name, "serial", iss.Serial)
	reply(w, http.StatusOK, enrolResponse{Cert: pemCert(iss.DER), CA: l.ca.pem})
}

func (l *Listener) crl(w http.ResponseWriter, r *http.Request) {
	der, err := l.ca.CRL(r.Context())
	if err != nil {
		l.log.Error("cluster CRL", "err", err)
		http.Error(w, "the revocation list is not available", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Write(der)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func reply(w http.ResponseWriter, status int, v enrolResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
