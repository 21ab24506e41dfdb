package web

import (
	"context"
	"io"
	"net/http"
	"strings"

	"conclave/internal/auth"
	"conclave/internal/perm"
	"conclave/internal/store"
)

// Plane says which listener a Server answers for.
type Plane int

// The planes.
const (
	// PlaneAll: one listener serves meetings and management (no
	// --admin-listen).
	PlaneAll Plane = iota
	// PlaneMeeting: the meeting listener when management has its own; it
	// answers management paths like unknown paths.
	PlaneMeeting
	// PlaneAdmin: the management listener (--admin-listen): /admin and the
	// management API, sign-in, no meetings.
	PlaneAdmin
)

// name is the plane recorded in the sessions made on it.
func (p Plane) name() string {
	switch p {
	case PlaneMeeting:
		return "meeting"
	case PlaneAdmin:
		return "admin"
	case PlaneNode:
		return "node"
	}
	return ""
}

// Where says on which planes a route exists.
type Where int

// Where a route exists.
const (
	// Both planes (sign-in, static files, health).
	Both Where = iota
	// Meeting: meeting pages and their API (WebSocket, files, E2EE).
	Meeting
	// Management: /admin and the management API.
	Management
)

// ManageFunc handles a management request once its session, permission,
// forced password change and CSRF token have been checked; u is the
// signed-in account.
type ManageFunc func(w http.ResponseWriter, r *http.Request, u store.User)

// Route is one row of the route table: the router, the permission check
// and the OpenAPI coverage test all read it. A management route names its
// Perm and a Manage handler; other routes have a Handle that checks what it
// needs itself. To add a management endpoint: add a row here, a handler,
// and its operation to docs/openapi.yaml (TestOpenAPICoverage fails until
// all three agree).
type Route struct {
	Method string
	// Path is a net/http ServeMux path pattern ("/api/users/{username}").
	Path  string
	Where Where
	// Perm is the permission a management route needs; empty for the
	// others.
	Perm   perm.Permission
	Manage ManageFunc
	Handle http.HandlerFunc
}

// Pattern is the ServeMux pattern of the route.
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// API reports whether the route belongs to the JSON API (and so to
// docs/openapi.yaml).
func (rt Route) API() bool { return strings.HasPrefix(rt.Path, "/api/") }

// Routes returns the route table.
func (s *Server) Routes() []Route {
	healthz := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	}
	m := func(method, path string, p perm.Permission, h ManageFunc) Route {
		return Route{Method: method, Path: path, Where: Management, Perm: p, Manage: h}
	}
	rows := []Route{
		// Pages.
		{Method: "GET", Path: "/{$}", Where: Meeting, Handle: s.page("index.html")},
		{Method: "GET", Path: "/r/{alias}", Where: Meeting, Handle: s.page("meeting.html")},
		{Method: "GET", Path: "/admin", Where: Management, Handle: s.page("admin.html")},
		{Method: "GET", Path: "/enrol", Where: Both, Handle: s.page("enrol.html")},
		{Method: "GET", Path: "/static/", Where: Both, Handle: s.static},
		{Method: "GET", Path: "/ws", Where: Meeting, Handle: s.handleWS},
		{Method: "GET", Path: "/healthz", Where: Both, Handle: healthz},
		{Method: "GET", Path: CRLPath, Where: Both, Handle: s.serveCRL},

		// Sign-in and one's own account.
		{Method: "GET", Path: "/api/banner", Where: Both, Handle: s.apiBanner},
		{Method: "GET", Path: "/api/login/methods", Where: Both, Handle: s.apiLoginMethods},
		{Method: "POST", Path: "/api/login", Where: Both, Handle: s.apiLogin},
		{Method: "POST", Path: "/api/login/certificate", Where: Both, Handle: s.apiCertLogin},
		{Method: "GET", Path: "/api/oidc/login", Where: Both, Handle: s.apiOIDCStart},
		{Method: "GET", Path: "/api/oidc/callback", Where: Both, Handle: s.apiOIDCCallback},
		{Method: "POST", Path: "/api/logout", Where: Both, Handle: s.apiLogout},
		{Method: "POST", Path: "/api/password", Where: Both, Handle: s.apiPassword},
		{Method: "POST", Path: "/api/logout-everywhere", Where: Both, Handle: s.apiLogoutEverywhere},
		{Method: "GET", Path: "/api/me", Where: Both, Handle: s.apiMe},
		{Method: "POST", Path: "/api/enrol", Where: Both, Handle: s.apiEnrol},
		{Method: "GET", Path: "/api/openapi.json", Where: Management, Handle: s.apiOpenAPI},

		// Meetings.
		{Method: "GET", Path: "/api/e2ee/org", Where: Meeting, Handle: s.apiOrg},
		{Method: "POST", Path: "/api/e2ee/challenge", Where: Meeting, Handle: s.apiChallenge},
		{Method: "POST", Path: "/api/e2ee/credential", Where: Meeting, Handle: s.apiCredential},
		{Method: "GET", Path: "/api/e2ee/log/checkpoint", Where: Both, Handle: s.logAPI().checkpoint},
		{Method: "POST", Path: "/api/e2ee/log/prove", Where: Both, Handle: s.logAPI().prove},
		{Method: "GET", Path: "/api/e2ee/log/entries", Where: Both, Handle: s.logAPI().entries},
		{Method: "POST", Path: "/api/files", Where: Meeting, Handle: s.apiUpload},
		{Method: "GET", Path: "/api/files/{id}", Where: Meeting, Handle: s.apiDownload},

		// Rooms.
		m("GET", "/api/rooms", perm.RoomsView, s.apiListRooms),
		m("POST", "/api/rooms", perm.RoomsManage, s.apiCreateRoom),
		m("PATCH", "/api/rooms/{alias}", perm.RoomsManage, s.apiUpdateRoom),
		m("DELETE", "/api/rooms/{alias}", perm.RoomsManage, s.apiDeleteRoom),
		m("GET", "/api/rooms/{alias}/members", perm.RoomsView, s.apiListMembers),
		m("PUT", "/api/rooms/{alias}/members/{username}", perm.RoomsManage, s.apiSetMember),
		m("DELETE", "/api/rooms/{alias}/members/{username}", perm.RoomsManage, s.apiRemoveMember),

		// Accounts.
		m("GET", "/api/users", perm.UsersView, s.apiListUsers),
		m("POST", "/api/users", perm.UsersManage, s.apiCreateUser),
		m("GET", "/api/users/{username}", perm.UsersView, s.apiGetUser),
		m("DELETE", "/api/users/{username}", perm.UsersManage, s.apiDeleteUser),
		m("POST", "/api/users/{username}/disable", perm.UsersManage, s.apiDisableUser),
		m("POST", "/api/users/{username}/enable", perm.UsersManage, s.apiEnableUser),
		m("POST", "/api/users/{username}/unlock", perm.UsersManage, s.apiUnlockUser),
		m("POST", "/api/users/{username}/password", perm.UsersManage, s.apiResetPassword),
		m("PUT", "/api/users/{username}/roles", perm.UsersAssignRoles, s.apiSetUserRoles),
		m("GET", "/api/users/{username}/sessions", perm.UsersView, s.apiUserSessions),
		m("DELETE", "/api/users/{username}/sessions", perm.UsersManage, s.apiEndUserSessions),
		m("POST", "/api/enrolments", perm.UsersManage, s.apiCreateEnrolment),
		m("GET", "/api/users/{username}/devices", perm.UsersView, s.apiListDevices),
		m("POST", "/api/users/{username}/devices/revoke", perm.UsersManage, s.apiRevokeDevice),

		// Sessions.
		m("GET", "/api/sessions", perm.SessionsView, s.apiListSessions),
		m("DELETE", "/api/sessions/{id}", perm.SessionsEnd, s.apiEndSession),

		// Roles.
		m("GET", "/api/permissions", perm.RolesView, s.apiListPermissions),
		m("GET", "/api/roles", perm.RolesView, s.apiListRoles),
		m("POST", "/api/roles", perm.RolesManage, s.apiCreateRole),
		m("PUT", "/api/roles/{name}", perm.RolesManage, s.apiUpdateRole),
		m("DELETE", "/api/roles/{name}", perm.RolesManage, s.apiDeleteRole),

		// Sign-in settings.
		m("GET", "/api/settings/ldap", perm.AuthSettingsView, s.apiGetLDAP),
		m("PUT", "/api/settings/ldap", perm.AuthSettingsManage, s.apiSetLDAP),
		m("POST", "/api/settings/ldap/test", perm.AuthSettingsManage, s.apiTestLDAP),
		m("GET", "/api/settings/oidc", perm.AuthSettingsView, s.apiGetOIDC),
		m("PUT", "/api/settings/oidc", perm.AuthSettingsManage, s.apiSetOIDC),
		m("GET", "/api/settings/certificate-login", perm.AuthSettingsView, s.apiGetCert),
		m("PUT", "/api/settings/certificate-login", perm.AuthSettingsManage, s.apiSetCert),
	}
	rows = append(rows, s.opsRoutes(m)...)
	rows = append(rows, s.clusterRoutes(m)...)
	return append(rows, s.sipRoutes(m)...)
}

// servedOn reports whether a route exists on plane p.
func (w Where) servedOn(p Plane) bool {
	switch p {
	case PlaneMeeting:
		return w != Management
	case PlaneAdmin:
		return w != Meeting
	}
	return true
}

func (s *Server) routes() {
	for _, rt := range s.Routes() {
		if !s.serves(rt) {
			continue
		}
		h := rt.Handle
		if rt.Manage != nil {
			h = s.require(rt.Perm, rt.Manage)
		}
		s.mux.HandleFunc(rt.Pattern(), h)
	}
	if s.Plane == PlaneNode && s.LogUpstream != nil {
		s.mux.Handle("/api/e2ee/log/", s.LogUpstream)
	}
	if s.Plane == PlaneNode && s.SignIn != nil {
		s.mux.HandleFunc("GET /api/me", s.nodeMe)
	}
	if s.Plane == PlaneAdmin {
		s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/admin", http.StatusSeeOther)
		})
	}
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not-found", "No such API endpoint.")
	})
}

type callerKey struct{}

// Caller is the signed-in account of a management request and what it
// may do.
type Caller struct {
	User    store.User
	Session store.Session
	Perms   perm.Set
}

// CallerFrom returns the caller of a management request, set by the
// permission check.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// require wraps a management handler: a session on this plane, the
// permission p among those of the account's roles, no pending forced
// password change, and for anything but GET a same-origin request with
// the session's CSRF token. The permission is checked before anything in
// the request is looked at, so that a caller without it learns nothing.
func (s *Server) require(p perm.Permission, h ManageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, u, ok := s.session(w, r)
		if !ok {
			return
		}
		perms, err := s.Roles.Permissions(r.Context(), u)
		if err != nil {
			s.log.Error("permission lookup failed", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "The server could not check your permissions.")
			return
		}
		if !perms.Has(p) {
			writeError(w, http.StatusForbidden, "forbidden", "Your roles do not give the permission "+string(p)+", which this needs.")
			return
		}
		if !s.passwordCurrent(w, u) {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) || !auth.ValidCSRF(sess, r.Header.Get(csrfHeader)) {
				writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
				return
			}
		}
		ctx := context.WithValue(r.Context(), callerKey{}, Caller{User: u, Session: sess, Perms: perms})
		h(w, r.WithContext(ctx), u)
	}
}

// serveCRL serves the local CA's revocation list.
func (s *Server) serveCRL(w http.ResponseWriter, r *http.Request) {
	if len(s.CRL) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(s.CRL)
}
