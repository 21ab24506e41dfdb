package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"conclave/internal/auth"
	"conclave/internal/store"
)

// sessionCookie names the cookie holding the session token.
const sessionCookie = "conclave_session"

// csrfHeader carries the session's CSRF token on state-changing requests.
const csrfHeader = "X-CSRF-Token"

type userJSON struct {
	Username    string `json:"username"`
	DisplayName string `json:"displayName"`
	Role        string `json:"role"`
}

type meJSON struct {
	User userJSON `json:"user"`
	CSRF string   `json:"csrf"`
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

func (s *Server) apiRoomInfo(w http.ResponseWriter, r *http.Request) {
	room, err := s.Store.RoomByAlias(r.Context(), r.PathValue("alias"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "room-not-found", "No meeting exists at this address. Check the link you were given.")
		return
	}
	if err != nil {
		s.log.Error("room lookup failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not look up this meeting.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"alias": room.Alias, "name": room.DisplayName})
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
	u, err := auth.Login(r.Context(), s.Store, req.Username, req.Password)
	if err != nil {
		if !errors.Is(err, auth.ErrBadCredentials) {
			s.log.Error("login failed", "err", err)
		}
		s.log.Info("login refused", "username", req.Username, "remote", clientAddr(r))
		writeError(w, http.StatusUnauthorized, "bad-credentials", "The username or password is incorrect.")
		return
	}
	token, sess, err := s.Sessions.Create(r.Context(), u, clientAddr(r))
	if err != nil {
		s.log.Error("session creation failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not start a session.")
		return
	}
	s.log.Info("login", "username", u.Username, "remote", clientAddr(r))
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: sess.ExpiresAt})
	writeJSON(w, http.StatusOK, meJSON{User: toUserJSON(u), CSRF: sess.CSRFToken})
}

// session returns the request's valid session, or answers 401.
func (s *Server) session(w http.ResponseWriter, r *http.Request) (store.Session, store.User, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "no-session", "Sign in first.")
		return store.Session{}, store.User{}, false
	}
	sess, u, err := s.Sessions.Lookup(r.Context(), c.Value)
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
	writeJSON(w, http.StatusOK, meJSON{User: toUserJSON(u), CSRF: sess.CSRFToken})
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.session(w, r)
	if !ok {
		return
	}
	if !auth.ValidCSRF(sess, r.Header.Get(csrfHeader)) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return
	}
	c, _ := r.Cookie(sessionCookie)
	if err := s.Sessions.Delete(r.Context(), c.Value); err != nil {
		s.log.Error("logout failed", "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// admin wraps a handler that requires an administrator session, and a CSRF
// token for anything but GET.
func (s *Server) admin(h func(http.ResponseWriter, *http.Request, store.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, u, ok := s.session(w, r)
		if !ok {
			return
		}
		if u.Role != store.RoleAdmin {
			writeError(w, http.StatusForbidden, "forbidden", "This needs an administrator account.")
			return
		}
		if r.Method != http.MethodGet {
			if !sameOrigin(r) || !auth.ValidCSRF(sess, r.Header.Get(csrfHeader)) {
				writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
				return
			}
		}
		h(w, r, u)
	}
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
	writeJSON(w, http.StatusCreated, map[string]userJSON{"user": toUserJSON(u)})
}

type roomJSON struct {
	Alias        string `json:"alias"`
	Name         string `json:"name"`
	URL          string `json:"url"`
	Participants int    `json:"participants"`
}

func (s *Server) apiListRooms(w http.ResponseWriter, r *http.Request, _ store.User) {
	rooms, err := s.Store.ListRooms(r.Context())
	if err != nil {
		s.log.Error("list rooms failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not list the rooms.")
		return
	}
	out := make([]roomJSON, 0, len(rooms))
	for _, room := range rooms {
		out = append(out, roomJSON{Alias: room.Alias, Name: room.DisplayName, URL: s.roomURL(room.Alias),
			Participants: s.Meetings.Participants(room.Alias)})
	}
	writeJSON(w, http.StatusOK, map[string][]roomJSON{"rooms": out})
}

func (s *Server) apiCreateRoom(w http.ResponseWriter, r *http.Request, u store.User) {
	var req struct {
		Alias string `json:"alias"`
		Name  string `json:"name"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	req.Alias = strings.ToLower(strings.TrimSpace(req.Alias))
	req.Name = strings.TrimSpace(req.Name)
	if err := store.ValidAlias(req.Alias); err != nil {
		writeError(w, http.StatusBadRequest, "invalid-alias", sentence(err))
		return
	}
	if req.Name == "" {
		req.Name = req.Alias
	}
	if len([]rune(req.Name)) > 128 {
		writeError(w, http.StatusBadRequest, "invalid-name", "The room name is longer than 128 characters.")
		return
	}
	room, err := s.Store.CreateRoom(r.Context(), store.Room{Alias: req.Alias, DisplayName: req.Name, OwnerID: u.ID, CreatedAt: time.Now()})
	if errors.Is(err, store.ErrExists) {
		writeError(w, http.StatusConflict, "room-exists", "A room with this alias already exists.")
		return
	}
	if err != nil {
		s.log.Error("create room failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not create the room.")
		return
	}
	s.log.Info("room created", "room", room.Alias, "by", u.Username)
	writeJSON(w, http.StatusCreated, roomJSON{Alias: room.Alias, Name: room.DisplayName, URL: s.roomURL(room.Alias)})
}

func (s *Server) apiDeleteRoom(w http.ResponseWriter, r *http.Request, u store.User) {
	alias := r.PathValue("alias")
	err := s.Store.DeleteRoom(r.Context(), alias)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "room-not-found", "No room has this alias.")
		return
	}
	if err != nil {
		s.log.Error("delete room failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not delete the room.")
		return
	}
	s.log.Info("room deleted", "room", alias, "by", u.Username)
	w.WriteHeader(http.StatusNoContent)
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
