package web

import (
	"net/http"
	"net/url"
	"strings"
)

// PlaneNode is the listener of a conference node (conclave node run):
// meeting pages, signaling and meeting files for participants who have
// no account session on it. Accounts, sign-in and management live on
// the management node.
const PlaneNode Plane = PlaneAdmin + 1

// nodeRoutes are the route patterns a conference node serves.
var nodeRoutes = map[string]bool{
	"GET /{$}":            true,
	"GET /r/{alias}":      true,
	"GET /static/":        true,
	"GET /ws":             true,
	"GET /healthz":        true,
	"GET " + CRLPath:      true,
	"GET /api/banner":     true,
	"GET /api/e2ee/org":   true,
	"POST /api/files":     true,
	"GET /api/files/{id}": true,
}

// serves reports whether the route exists on the server's plane.
func (s *Server) serves(rt Route) bool {
	if s.Plane == PlaneNode {
		return nodeRoutes[rt.Pattern()]
	}
	return rt.Where.servedOn(s.Plane)
}

// OrgKey is the organisation's E2EE signing key as browsers pin it
// (GET /api/e2ee/org): the registration authority's on the management
// node, the copy the configuration carries on a conference node.
type OrgKey interface {
	OrgID() string
	Name() string
	PublicKey() []byte
	// LogVerifierKey is the note verifier key of the E2EE transparency
	// log's checkpoints.
	LogVerifierKey() string
}

// peerSockets is the CSP connect-src addition for the other nodes'
// signaling WebSockets: " wss://host:port" each.
func (s *Server) peerSockets() string {
	if s.PeerOrigins == nil {
		return ""
	}
	var b strings.Builder
	for _, o := range s.PeerOrigins() {
		u, err := url.Parse(o)
		if err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(u.Host, " ;'\"") {
			continue
		}
		b.WriteString(" wss://" + u.Host)
	}
	return b.String()
}

// peerOriginPatterns are the other nodes' origins as WebSocket origin
// patterns (path.Match, its special characters escaped).
func (s *Server) peerOriginPatterns() []string {
	if s.PeerOrigins == nil {
		return nil
	}
	var out []string
	for _, o := range s.PeerOrigins() {
		u, err := url.Parse(o)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			continue
		}
		out = append(out, "https://"+patternEscaper.Replace(u.Host))
	}
	return out
}

var patternEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// nodeMe answers GET /api/me on a conference node, which has no
// sessions: nobody is signed in here, and accounts sign in at the
// management node (signIn, its base URL), whose meeting page sends them
// on to a node with an admission ticket (docs/cluster.md).
func (s *Server) nodeMe(w http.ResponseWriter, r *http.Request) {
	var body struct {
		apiError
		SignIn string `json:"signIn,omitempty"`
	}
	body.Error.Code, body.Error.Message = "no-session", "Nobody signs in on this node: accounts sign in at the management node."
	if u, err := url.Parse(s.SignIn()); err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil {
		body.SignIn = "https://" + u.Host
	}
	writeJSON(w, http.StatusUnauthorized, body)
}
