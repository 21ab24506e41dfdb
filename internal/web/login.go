package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/authn"
	"conclave/internal/store"
)

// directory returns the directory login to try before local accounts, or
// nil when no directory is enabled.
func (s *Server) directory(ctx context.Context) auth.DirectoryLogin {
	if s.AuthSettings == nil {
		return nil
	}
	ls, _, err := s.AuthSettings.LDAP(ctx)
	if err != nil {
		s.log.Error("directory settings unreadable", "err", err)
		return nil
	}
	if !ls.Enabled {
		return nil
	}
	return func(ctx context.Context, username, password string) (authn.Identity, error) {
		return authn.LDAPLogin(ctx, ls, username, password)
	}
}

// certRequired reports whether certificate login is required of
// administrators on this listener. The meeting listener of a split
// deployment never serves management, so it does not require it.
func (s *Server) certRequired(ctx context.Context) bool {
	if s.AuthSettings == nil || s.Plane == PlaneMeeting {
		return false
	}
	cs, _, err := s.AuthSettings.Cert(ctx)
	return err != nil || cs.Enabled && cs.Required
}

// refuseWithoutCert answers 403 and records it when u is an administrator
// who must sign in with a certificate but used method.
func (s *Server) refuseWithoutCert(w http.ResponseWriter, r *http.Request, u store.User, method string) bool {
	if u.Role != store.RoleAdmin || method == auth.MethodCertificate || !s.certRequired(r.Context()) {
		return false
	}
	s.auditEvent(r, audit.Event{Actor: u.Username, Action: audit.ActionLoginFailed, Target: u.Username,
		Outcome: audit.OutcomeFailure, Details: map[string]string{"method": method, "reason": "certificate required"}})
	writeError(w, http.StatusForbidden, "certificate-required",
		"Administrators sign in with their client certificate here; a password alone is not accepted.")
	return true
}

func (s *Server) auditEvent(r *http.Request, e audit.Event) {
	if s.Audit == nil {
		return
	}
	e.Source = clientAddr(r)
	if err := s.Audit.Record(r.Context(), e); err != nil {
		s.log.Error("audit record failed", "action", e.Action, "err", err)
	}
}

// apiLoginMethods tells the sign-in page which methods this listener
// offers.
func (s *Server) apiLoginMethods(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"password": true, "ldap": false, "oidc": false, "certificate": false, "certificateRequired": false}
	if s.AuthSettings != nil {
		ctx := r.Context()
		if ls, _, err := s.AuthSettings.LDAP(ctx); err == nil && ls.Enabled {
			out["ldap"] = true
		}
		if os, _, err := s.AuthSettings.OIDC(ctx); err == nil && os.Enabled &&
			(s.Plane != PlaneAdmin || os.Use != authn.UseUsers) && (s.Plane != PlaneMeeting || os.Use != authn.UseAdmins) {
			out["oidc"] = true
		}
		if cs, _, err := s.AuthSettings.Cert(ctx); err == nil && cs.Enabled && s.Plane != PlaneMeeting {
			out["certificate"] = true
			out["certificateRequired"] = cs.Required
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// apiCertLogin signs an administrator in with the client certificate of
// the TLS connection.
func (s *Server) apiCertLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross-origin", "Cross-origin requests are refused.")
		return
	}
	cs, _, err := s.AuthSettings.Cert(r.Context())
	if err != nil || !cs.Enabled {
		writeError(w, http.StatusNotFound, "certificate-login-off", "Certificate login is not enabled on this server.")
		return
	}
	fail := func(reason, msg string) {
		s.auditEvent(r, audit.Event{Actor: "anonymous", Action: audit.ActionLoginFailed, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"method": auth.MethodCertificate, "reason": reason}})
		writeError(w, http.StatusUnauthorized, "bad-certificate", msg)
	}
	if r.TLS == nil {
		fail("no TLS", "Certificate login needs HTTPS.")
		return
	}
	name, err := s.Revocation.VerifyClientCert(r.Context(), cs, r.TLS.PeerCertificates, s.now())
	if err != nil {
		fail(err.Error(), sentence(err))
		return
	}
	u, err := s.Store.UserByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) && strings.Contains(name, "@") {
		u, err = s.Store.UserByName(r.Context(), name[:strings.IndexByte(name, '@')])
	}
	if err != nil || !u.Enabled || u.Role != store.RoleAdmin {
		fail("certificate names "+name+", which is not an enabled administrator account",
			"The certificate does not name an enabled administrator account.")
		return
	}
	s.auditEvent(r, audit.Event{Actor: u.Username, Action: audit.ActionLogin, Target: u.Username, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"method": auth.MethodCertificate, "certificate": name}})
	s.startSession(w, r, u, s.Accounts.State(u), auth.MethodCertificate)
}

// localPath reports whether p is a path on this server (not another
// origin), for redirects after single sign-on.
func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\")
}

func (s *Server) oidcRedirectURL() string {
	return strings.TrimRight(s.PublicURL, "/") + "/api/oidc/callback"
}

// apiOIDCStart sends the browser to the single sign-on provider.
func (s *Server) apiOIDCStart(w http.ResponseWriter, r *http.Request) {
	os, _, err := s.AuthSettings.OIDC(r.Context())
	if err != nil || !os.Enabled {
		writeError(w, http.StatusNotFound, "sso-off", "Single sign-on is not enabled on this server.")
		return
	}
	ret := r.URL.Query().Get("return")
	if !localPath(ret) {
		ret = "/"
		if s.Plane == PlaneAdmin {
			ret = "/admin"
		}
	}
	u, err := s.SSO.Start(r.Context(), os, s.oidcRedirectURL(), ret)
	if err != nil {
		s.log.Warn("single sign-on start failed", "err", err)
		writeError(w, http.StatusBadGateway, "sso-unavailable", sentence(err))
		return
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// apiOIDCCallback finishes a single sign-on: the browser comes back from
// the provider with a code; on success it gets a session and goes back
// where it started, else there with #sso-error=<sentence>.
func (s *Server) apiOIDCCallback(w http.ResponseWriter, r *http.Request) {
	back := func(to, msg string) {
		if msg != "" {
			to += "#sso-error=" + url.QueryEscape(msg)
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	}
	os, _, err := s.AuthSettings.OIDC(r.Context())
	if err != nil || !os.Enabled {
		writeError(w, http.StatusNotFound, "sso-off", "Single sign-on is not enabled on this server.")
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		s.auditEvent(r, audit.Event{Actor: "anonymous", Action: audit.ActionLoginFailed, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"method": auth.MethodOIDC, "reason": "provider: " + e}})
		back("/", "The single sign-on provider refused the sign-in ("+e+").")
		return
	}
	id, ret, err := s.SSO.Finish(r.Context(), os, s.oidcRedirectURL(), q.Get("state"), q.Get("code"))
	if ret == "" {
		ret = "/"
	}
	if err != nil {
		s.auditEvent(r, audit.Event{Actor: "anonymous", Action: audit.ActionLoginFailed, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"method": auth.MethodOIDC, "reason": err.Error()}})
		back(ret, sentence(err))
		return
	}
	ctx := audit.WithSource(r.Context(), clientAddr(r))
	u, err := s.Accounts.ExternalLogin(ctx, id, auth.MethodOIDC)
	if err != nil {
		back(ret, "Single sign-on worked, but Conclave refused the account: "+err.Error()+".")
		return
	}
	if s.Plane == PlaneAdmin && u.Role != store.RoleAdmin {
		back(ret, "This account has no management role.")
		return
	}
	if u.Role == store.RoleAdmin && s.certRequired(r.Context()) {
		s.auditEvent(r, audit.Event{Actor: u.Username, Action: audit.ActionLoginFailed, Target: u.Username,
			Outcome: audit.OutcomeFailure, Details: map[string]string{"method": auth.MethodOIDC, "reason": "certificate required"}})
		back(ret, "Administrators sign in with their client certificate here.")
		return
	}
	token, sess, err := s.Sessions.CreateWith(ctx, u, clientAddr(r), auth.SessionInfo{Plane: s.Plane.name(), Method: auth.MethodOIDC})
	if err != nil {
		back(ret, sentence(err))
		return
	}
	s.setSessionCookie(w, token, sess)
	back(ret, "")
}
