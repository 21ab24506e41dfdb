// Package web serves Conclave over HTTPS: the browser client's pages and
// modules, the signaling WebSocket, and the JSON API used by the admin
// page. docs/api.md describes the API.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/authn"
	"conclave/internal/clock"
	"conclave/internal/files"
	"conclave/internal/guard"
	"conclave/internal/meeting"
	"conclave/internal/ra"
	"conclave/internal/store"
)

// Config holds what the web layer needs from the rest of the server.
type Config struct {
	Store    store.Store
	Sessions *auth.Sessions
	Accounts *auth.Accounts
	Enroller *auth.Enroller
	Meetings *meeting.Manager
	// Authority issues E2EE device credentials.
	Authority *ra.Authority
	// Org, when set, is the organisation's key served instead of
	// Authority's (a conference node, which has no authority).
	Org OrgKey
	// Guard applies the break-in rules to sign-ins: a quarantined address
	// is refused before any password is hashed, and failed sign-ins count
	// towards its quarantine. Nil disables both (tests).
	Guard *guard.Guard
	// Hashing bounds the memory of concurrent password hashing; nil means
	// no bound (tests).
	Hashing *auth.HashBudget
	// JoinTimeout is how long a signaling connection may stay open without
	// joining (DefaultJoinTimeout when 0).
	JoinTimeout time.Duration
	// BodyTimeout is how long an API request may take to send its body
	// (DefaultBodyTimeout when 0); file uploads may instead pause at most
	// this long between two reads.
	BodyTimeout time.Duration
	// Files keeps encrypted file blobs.
	Files *files.Store
	// RemoteFiles fetches the blobs of this node's meetings that other
	// nodes of the cluster keep (internal/cascade); nil for a node alone.
	RemoteFiles RemoteFiles
	// Assets holds the browser client: *.html at the root, modules and
	// styles under static/.
	Assets fs.FS
	// PublicURL is the base URL printed in links, e.g. https://host:8443.
	PublicURL string
	// Banner is shown before the login form; empty for none.
	Banner string
	// PINMinLength is the minimum number of digits of room PINs.
	PINMinLength int
	// CRL is the local CA's revocation list (DER), served at CRLPath;
	// nil when there is none (an operator certificate).
	CRL []byte
	// Audit records administrators' changes; nil records nothing.
	Audit  audit.Recorder
	Logger *slog.Logger

	// Telephony is the SIP side (docs/sip.md); nil when SIP is off.
	Telephony *Telephony

	// Plane is the listener this handler answers for: PlaneAll when one
	// listener serves everything, else PlaneMeeting or PlaneAdmin.
	Plane Plane
	// Roles resolves accounts' roles into permissions; Lifecycle creates,
	// disables, deletes accounts and changes their roles.
	Roles     *auth.Roles
	Lifecycle *auth.Lifecycle
	// Clock dates what the handlers compute; nil means the system clock.
	Clock clock.Clock
	// AuthSettings holds the directory, single sign-on and certificate
	// login settings; SSO runs single sign-ons; Revocation checks client
	// certificates.
	AuthSettings *authn.Settings
	SSO          *authn.SSO
	Revocation   *authn.Revocation

	// Ops serves the operator's endpoints (audit viewer, alarms, settings,
	// backups, certificates, metrics); nil leaves them out.
	Ops Operations

	// Cluster manages the cluster's nodes (docs/cluster.md); nil when the
	// server is not a cluster's management node.
	Cluster ClusterAdmin
	// LogUpstream, on a conference node (PlaneNode), answers the E2EE
	// transparency log's requests (/api/e2ee/log/...) by passing them on
	// to the management node, which keeps the log.
	LogUpstream http.Handler
	// SignIn, on a conference node (PlaneNode), returns the management
	// node's base URL, where accounts sign in: the node's GET /api/me
	// names it, so that the meeting page's sign-in link leads there.
	SignIn func() string

	// PeerOrigins returns the origins (https://host:port) of the
	// cluster's other nodes: the meeting page may open their signaling
	// WebSocket (a redirect, a failover), and they open this node's.
	// Nil for a node alone (node.go).
	PeerOrigins func() []string
}

// RemoteFiles reaches the meeting files other nodes keep
// (docs/cluster.md, "Meeting files across nodes").
type RemoteFiles interface {
	// FetchFile opens blob id of meeting, at most max bytes, on the node
	// that keeps it. Errors: files.ErrNotFound, files.ErrTooLarge,
	// files.ErrUnreachable, files.ErrBusy.
	FetchFile(ctx context.Context, meeting, id string, max int64) (io.ReadCloser, int64, error)
}

// Server is the HTTP handler of a Conclave node.
type Server struct {
	Config
	log     *slog.Logger
	baseCtx context.Context
	mux     *http.ServeMux
}

// New builds the handler. ctx is the lifetime of long-lived connections:
// cancelling it closes every WebSocket.
func New(ctx context.Context, cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{Config: cfg, log: log, baseCtx: ctx, mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP applies the security headers and the request size limit, then
// routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "+
		"media-src 'self' blob:; connect-src 'self'"+s.peerSockets()+"; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=()")
	if r.Body != nil && r.Body != http.NoBody {
		// A client that sends its body slowly (slowloris) is cut off: an
		// API body has BodyTimeout to arrive in full, a file upload may
		// pause at most that long.
		rc := http.NewResponseController(w)
		timeout := s.BodyTimeout
		if timeout <= 0 {
			timeout = DefaultBodyTimeout
		}
		if r.URL.Path == "/api/files" || r.URL.Path == restorePath {
			// File uploads and restored backups have their own, larger
			// size limits.
			r.Body = &progressDeadline{ReadCloser: r.Body, rc: rc, idle: timeout}
			rc.SetReadDeadline(time.Now().Add(timeout))
		} else {
			// File uploads have their own, larger size limit.
			r.Body = http.MaxBytesReader(w, r.Body, maxBodySize)
			rc.SetReadDeadline(time.Now().Add(timeout))
		}
	}
	s.mux.ServeHTTP(w, r)
}

// DefaultBodyTimeout bounds how long a request body may take (API) or
// pause (file upload).
const DefaultBodyTimeout = 10 * time.Second

// progressDeadline moves the connection's read deadline on after every
// read, so that a file upload may take as long as it needs while it makes
// progress, but not stall.
type progressDeadline struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (p *progressDeadline) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.rc.SetReadDeadline(time.Now().Add(p.idle))
	}
	return n, err
}

// CRLPath is where the local CA's revocation list is served; the server
// certificates it issues name it as their CRL distribution point.
const CRLPath = "/pki/ca.crl"

// maxBodySize bounds API request bodies.
const maxBodySize = 64 << 10

func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := fs.ReadFile(s.Assets, name)
		if err != nil {
			http.Error(w, "page missing from this build", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(data)
	}
}

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	name := path.Clean(strings.TrimPrefix(r.URL.Path, "/"))
	if !strings.HasPrefix(name, "static/") || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(s.Assets, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".mjs", ".js":
		ctype = "text/javascript; charset=utf-8"
	case ".css":
		ctype = "text/css; charset=utf-8"
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(data)
}

// apiError is the body of every API error.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// readJSON decodes a request body into v, refusing unknown fields; it
// answers the request itself and returns false on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too-large", "The request body is too large.")
			return false
		}
		writeError(w, http.StatusBadRequest, "bad-request", "The request body is not valid JSON for this endpoint.")
		return false
	}
	return true
}

// clientAddr is the peer's IP address, for logs and audit.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// roomURL is the stable meeting URL of a room.
func (s *Server) roomURL(alias string) string {
	return strings.TrimRight(s.PublicURL, "/") + "/r/" + alias
}
