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

	"conclave/internal/audit"
	"conclave/internal/auth"
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
	// Guard applies the break-in rules to sign-ins: a quarantined address
	// is refused before any password is hashed, and failed sign-ins count
	// towards its quarantine. Nil disables both (tests).
	Guard *guard.Guard
	// Hashing bounds the memory of concurrent password hashing; nil means
	// no bound (tests).
	Hashing *auth.HashBudget
	// Files keeps encrypted file blobs.
	Files *files.Store
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

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /{$}", s.page("index.html"))
	m.HandleFunc("GET /r/{alias}", s.page("meeting.html"))
	m.HandleFunc("GET /admin", s.page("admin.html"))
	m.HandleFunc("GET /enrol", s.page("enrol.html"))
	m.HandleFunc("GET /static/", s.static)
	m.HandleFunc("GET /ws", s.handleWS)
	m.HandleFunc("GET "+CRLPath, func(w http.ResponseWriter, r *http.Request) {
		if len(s.CRL) == 0 {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(s.CRL)
	})
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})

	m.HandleFunc("GET /api/banner", s.apiBanner)
	m.HandleFunc("POST /api/login", s.apiLogin)
	m.HandleFunc("POST /api/logout", s.apiLogout)
	m.HandleFunc("POST /api/password", s.apiPassword)
	m.HandleFunc("POST /api/logout-everywhere", s.apiLogoutEverywhere)
	m.HandleFunc("GET /api/e2ee/org", s.apiOrg)
	m.HandleFunc("POST /api/e2ee/credential", s.apiCredential)
	m.HandleFunc("POST /api/files", s.apiUpload)
	m.HandleFunc("GET /api/files/{id}", s.apiDownload)
	m.HandleFunc("GET /api/me", s.apiMe)
	m.HandleFunc("POST /api/enrol", s.apiEnrol)
	m.HandleFunc("GET /api/rooms", s.admin(s.apiListRooms))
	m.HandleFunc("POST /api/rooms", s.admin(s.apiCreateRoom))
	m.HandleFunc("PATCH /api/rooms/{alias}", s.admin(s.apiUpdateRoom))
	m.HandleFunc("DELETE /api/rooms/{alias}", s.admin(s.apiDeleteRoom))
	m.HandleFunc("GET /api/rooms/{alias}/members", s.admin(s.apiListMembers))
	m.HandleFunc("PUT /api/rooms/{alias}/members/{username}", s.admin(s.apiSetMember))
	m.HandleFunc("DELETE /api/rooms/{alias}/members/{username}", s.admin(s.apiRemoveMember))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not-found", "No such API endpoint.")
	})
}

// ServeHTTP applies the security headers and the request size limit, then
// routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "+
		"media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=()")
	if r.Body != nil && r.URL.Path != "/api/files" {
		// File uploads have their own, larger limit.
		r.Body = http.MaxBytesReader(w, r.Body, maxBodySize)
	}
	s.mux.ServeHTTP(w, r)
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
