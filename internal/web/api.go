package web

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/guard"
	"conclave/internal/store"
)

// sessionCookie names the cookie holding the session token on the
// meeting listener (or the only one); adminCookie on the management
// listener. Browsers send cookies to every port of a host, so the two
// listeners need different names. The __Host- prefix makes browsers refuse
// them unless they are Secure, have Path=/ and no Domain, so a sibling
// host cannot plant or overwrite them.
const (
	sessionCookie = "__Host-conclave_session"
	adminCookie   = "__Host-conclave_admin_session"
)

// cookieName is the session cookie of this plane.
func (s *Server) cookieName() string {
	if s.Plane == PlaneAdmin {
		return adminCookie
	}
	return sessionCookie
}

// csrfHeader carries the session's CSRF token on state-changing requests.
const csrfHeader = "X-CSRF-Token"

// backgroundHeader marks a request a page made by itself (the admin page's
// periodic refresh): it is answered, but it does not count as activity for
// the session's idle timeout.
const backgroundHeader = "X-Conclave-Background"

type userJSON struct {
	Username    string `json:"username"`
	DisplayName string `json:"displayName"`
	Role        string `json:"role"`
}

type meJSON struct {
	User               userJSON `json:"user"`
	Roles              []string `json:"roles"`
	Permissions        []string `json:"permissions"`
	Source             string   `json:"source"`
	CSRF               string   `json:"csrf"`
	MustChangePassword bool     `json:"mustChangePassword,omitempty"`
	Reason             string   `json:"reason,omitempty"`
}

func toUserJSON(u store.User) userJSON {
	return userJSON{Username: u.Username, DisplayName: u.DisplayName, Role: string(u.Role)}
}

// sameOrigin reports whether a state-changing request comes from one of our
// own pages. Browsers send Origin on every cross-site POST; its absence
// means a non-browser client, which cannot carry a victim's cookie.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) apiBanner(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"banner": s.Banner})
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross-origin", "Cross-origin requests are refused.")
		return
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	ctx := audit.WithSource(r.Context(), clientAddr(r))
	release, ok := s.passwordTurn(w, r)
	if !ok {
		return
	}
	u, state, method, err := s.Accounts.LoginChain(ctx, req.Username, req.Password, s.directory(ctx))
	release()
	if errors.Is(err, auth.ErrBadCredentials) && s.Guard != nil {
		s.Guard.Fail(clientIP(r), "", guard.FailedLogin)
	}
	var te *auth.ThrottleError
	switch {
	case errors.As(err, &te):
		w.Header().Set("Retry-After", strconv.Itoa(int(te.Wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, "locked", sentence(err))
		return
	case errors.Is(err, auth.ErrBadCredentials):
		writeError(w, http.StatusUnauthorized, "bad-credentials", "The username or password is incorrect.")
		return
	case err != nil:
		s.log.Error("login failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not check the sign-in.")
		return
	}
	if s.refuseWithoutCert(w, r, u, method) {
		return
	}
	s.startSession(w, r, u, state, method)
}

// startSession opens a session for u, who has just authenticated with
// method, sets the cookie and answers as /api/me does.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u store.User, state auth.LoginState, method string) bool {
	ctx := audit.WithSource(r.Context(), clientAddr(r))
	token, sess, err := s.Sessions.CreateWith(ctx, u, clientAddr(r), auth.SessionInfo{Plane: s.Plane.name(), Method: method})
	var le *auth.SessionLimitError
	if errors.As(err, &le) {
		writeError(w, http.StatusForbidden, "session-limit", sentence(err))
		return false
	}
	if err != nil {
		s.log.Error("session creation failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not start a session.")
		return false
	}
	s.log.Info("login", "username", u.Username, "method", method, "remote", clientAddr(r))
	s.setSessionCookie(w, token, sess)
	writeJSON(w, http.StatusOK, s.me(r, u, sess, state))
	return true
}

func (s *Server) setSessionCookie(w http.ResponseWriter, token string, sess store.Session) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: token, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: sess.ExpiresAt})
}

// me describes the signed-in account to itself.
func (s *Server) me(r *http.Request, u store.User, sess store.Session, st auth.LoginState) meJSON {
	m := meJSON{User: toUserJSON(u), CSRF: sess.CSRFToken, MustChangePassword: st.MustChangePassword, Reason: st.Reason,
		Roles: u.Roles, Source: u.Source, Permissions: []string{}}
	if m.Roles == nil {
		m.Roles = []string{}
	}
	if m.Source == "" {
		m.Source = store.SourceLocal
	}
	if s.Roles != nil {
		if ps, err := s.Roles.Permissions(r.Context(), u); err == nil {
			for _, p := range ps.List() {
				m.Permissions = append(m.Permissions, string(p))
			}
		}
	}
	return m
}

func (s *Server) apiPassword(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.session(w, r)
	if !ok {
		return
	}
	if !sameOrigin(r) || !auth.ValidCSRF(sess, r.Header.Get(csrfHeader)) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return
	}
	var req struct {
		OldPassword string `json:"oldPassword"`
		NewPassword string `json:"newPassword"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	ctx := audit.WithSource(r.Context(), clientAddr(r))
	release, ok := s.passwordTurn(w, r)
	if !ok {
		return
	}
	err := s.Accounts.ChangePassword(ctx, u.ID, req.OldPassword, req.NewPassword)
	release()
	var pe *auth.PolicyError
	var te *auth.ThrottleError
	switch {
	case err == nil:
		// Whoever else holds a session of this account (signed in with the
		// old password, or with a stolen cookie) is signed out; this
		// browser stays signed in.
		c, _ := r.Cookie(s.cookieName())
		ctx = audit.WithActor(ctx, u.Username)
		if n, err := s.Sessions.DeleteOthers(ctx, u.ID, c.Value); err != nil {
			s.log.Error("ending the other sessions after a password change failed", "username", u.Username, "err", err)
		} else if n > 0 {
			s.log.Info("other sessions ended after a password change", "username", u.Username, "sessions", n)
		}
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, auth.ErrDirectoryAccount):
		writeError(w, http.StatusConflict, "external-account", sentence(err))
	case errors.Is(err, auth.ErrWrongPassword):
		writeError(w, http.StatusBadRequest, "bad-credentials", "The current password is incorrect.")
	case errors.As(err, &te):
		writeError(w, http.StatusTooManyRequests, "locked", sentence(err))
	case errors.As(err, &pe):
		writeError(w, http.StatusBadRequest, "password-policy", sentence(err))
	default:
		s.log.Error("password change failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not change the password.")
	}
}

// passwordTurn waits for the memory to check a password (Argon2, 64 MiB),
// after checking that the client's address is not quarantined, before
// and after the wait. It answers the request itself and returns false
// when the client must come back later; otherwise call the returned
// function when the checking is done.
func (s *Server) passwordTurn(w http.ResponseWriter, r *http.Request) (func(), bool) {
	ip := clientIP(r)
	quarantined := func() bool {
		if s.Guard == nil || s.Guard.CheckAddress(ip) == nil {
			return false
		}
		w.Header().Set("Retry-After", "600")
		writeError(w, http.StatusTooManyRequests, "address-blocked",
			"Too many failed attempts came from your network address; sign-in from it is blocked for a few minutes.")
		return true
	}
	if quarantined() {
		return nil, false
	}
	if s.Hashing == nil {
		return func() {}, true
	}
	source := netip.PrefixFrom(ip, ip.BitLen())
	if s.Guard != nil {
		source = s.Guard.Source(ip)
	}
	release, err := s.Hashing.Acquire(r.Context(), source, auth.DefaultArgon2.Memory)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "busy", sentence(auth.ErrHashBusy))
		return nil, false
	}
	if quarantined() {
		release()
		return nil, false
	}
	return release, true
}

// clientIP is the peer's IP address, unmapped.
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// session returns the request's valid session, or answers 401.
func (s *Server) session(w http.ResponseWriter, r *http.Request) (store.Session, store.User, bool) {
	c, err := r.Cookie(s.cookieName())
	if err != nil {
		writeError(w, http.StatusUnauthorized, "no-session", "Sign in first.")
		return store.Session{}, store.User{}, false
	}
	lookup := s.Sessions.Lookup
	if r.Header.Get(backgroundHeader) != "" {
		lookup = s.Sessions.Peek
	}
	sess, u, err := lookup(r.Context(), c.Value)
	if err == nil && sess.Plane != s.Plane.name() {
		// A session of the other listener is not valid here.
		err = auth.ErrNoSession
	}
	if err != nil {
		if !errors.Is(err, auth.ErrNoSession) {
			s.log.Error("session lookup failed", "err", err)
		}
		writeError(w, http.StatusUnauthorized, "no-session", "Your session has ended; sign in again.")
		return store.Session{}, store.User{}, false
	}
	return sess, u, true
}

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.session(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.me(r, u, sess, s.Accounts.State(u)))
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.session(w, r)
	if !ok {
		return
	}
	if !auth.ValidCSRF(sess, r.Header.Get(csrfHeader)) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return
	}
	c, _ := r.Cookie(s.cookieName())
	if err := s.Sessions.Delete(r.Context(), c.Value); err != nil {
		s.log.Error("logout failed", "err", err)
	} else {
		s.audited(r, u, audit.ActionLogout, u.Username)
	}
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// apiLogoutEverywhere ends every session of the signed-in account, on every
// device: what to do after a suspected theft.
func (s *Server) apiLogoutEverywhere(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.session(w, r)
	if !ok {
		return
	}
	if !sameOrigin(r) || !validCSRF(sess, r) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return
	}
	n, err := s.Sessions.DeleteUser(audit.WithActor(audit.WithSource(r.Context(), clientAddr(r)), u.Username), u.ID)
	if err != nil {
		s.log.Error("logout everywhere failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not end the sessions.")
		return
	}
	s.log.Info("logged out everywhere", "username", u.Username, "sessions", n)
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// passwordCurrent answers 403 password-change-required, and returns false,
// when u must change its password before doing anything else (reset by an
// administrator, or expired).
func (s *Server) passwordCurrent(w http.ResponseWriter, u store.User) bool {
	if st := s.Accounts.State(u); st.MustChangePassword {
		writeError(w, http.StatusForbidden, "password-change-required", sentence(errors.New(st.Reason)))
		return false
	}
	return true
}

func (s *Server) apiEnrol(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross-origin", "Cross-origin requests are refused.")
		return
	}
	var req struct {
		Token       string `json:"token"`
		Username    string `json:"username"`
		DisplayName string `json:"displayName"`
		Password    string `json:"password"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	u, err := s.Enroller.Redeem(r.Context(), req.Token, req.Username, req.DisplayName, req.Password)
	if err != nil {
		var pe *auth.PolicyError
		switch {
		case errors.Is(err, auth.ErrEnrolmentInvalid):
			writeError(w, http.StatusBadRequest, "enrolment-invalid", sentence(err))
		case errors.Is(err, auth.ErrUsernameTaken):
			writeError(w, http.StatusConflict, "username-taken", sentence(err))
		case errors.As(err, &pe):
			writeError(w, http.StatusBadRequest, "password-policy", sentence(err))
		case isUserInputError(err):
			writeError(w, http.StatusBadRequest, "invalid", sentence(err))
		default:
			s.log.Error("enrolment failed", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "The server could not create the account.")
		}
		return
	}
	s.log.Info("account enrolled", "username", u.Username, "role", u.Role, "remote", clientAddr(r))
	s.audited(r, u, audit.ActionAccountEnrolled, u.Username)
	writeJSON(w, http.StatusCreated, map[string]userJSON{"user": toUserJSON(u)})
}

// sentence turns an error into a user-facing sentence: capitalised, ending
// with a full stop.
func sentence(err error) string {
	msg := err.Error()
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// isUserInputError reports errors caused by what the user typed (invalid
// username or display name), as opposed to server faults, which the
// enroller wraps with "redeem enrolment".
func isUserInputError(err error) bool {
	return !strings.HasPrefix(err.Error(), "redeem enrolment")
}

func validCSRF(sess store.Session, r *http.Request) bool {
	return auth.ValidCSRF(sess, r.Header.Get(csrfHeader))
}
