package web

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
