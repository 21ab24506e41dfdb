package web

import (
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/perm"
	"conclave/internal/store"
)

// accountJSON is an account as the management API shows it.
type accountJSON struct {
	Username           string     `json:"username"`
	DisplayName        string     `json:"displayName"`
	Kind               string     `json:"kind"`
	Roles              []string   `json:"roles"`
	Enabled            bool       `json:"enabled"`
	Source             string     `json:"source"`
	CreatedAt          time.Time  `json:"createdAt"`
	PasswordChangedAt  *time.Time `json:"passwordChangedAt,omitempty"`
	MustChangePassword bool       `json:"mustChangePassword"`
	LockedUntil        *time.Time `json:"lockedUntil,omitempty"`
	Sessions           int        `json:"sessions"`
}

func (s *Server) accountJSON(r *http.Request, u store.User) accountJSON {
	a := accountJSON{Username: u.Username, DisplayName: u.DisplayName, Kind: string(u.Role), Roles: u.Roles,
		Enabled: u.Enabled, Source: u.Source, CreatedAt: u.CreatedAt, MustChangePassword: u.MustChangePassword}
	if a.Roles == nil {
		a.Roles = []string{}
	}
	if a.Source == "" {
		a.Source = store.SourceLocal
	}
	if !u.PasswordChangedAt.IsZero() && u.PasswordHash != "" {
		t := u.PasswordChangedAt
		a.PasswordChangedAt = &t
	}
	if t, err := s.Accounts.LockedUntil(r.Context(), u.Username); err == nil && !t.IsZero() {
		a.LockedUntil = &t
	}
	if n, err := s.Store.CountSessions(r.Context(), store.SessionFilter{UserID: u.ID, Now: s.now()}); err == nil {
		a.Sessions = n
	}
	return a
}

func (s *Server) now() time.Time {
	if s.Clock != nil {
		return s.Clock.Now().UTC()
	}
	return time.Now().UTC()
}

// managerCtx is the request context carrying the caller as audit actor and
// the client address as audit source.
func managerCtx(r *http.Request, u store.User) *http.Request {
	ctx := audit.WithSource(r.Context(), clientAddr(r))
	ctx = audit.WithActor(ctx, u.Username)
	return r.WithContext(ctx)
}

// targetUser looks up {username}; it answers 404 itself.
func (s *Server) targetUser(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	u, err := s.Store.UserByName(r.Context(), r.PathValue("username"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "user-not-found", "No account has this username.")
		return store.User{}, false
	}
	if err != nil {
		s.log.Error("user lookup failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not read the account.")
		return store.User{}, false
	}
	return u, true
}

// lifecycleError answers a refused or failed account change.
func (s *Server) lifecycleError(w http.ResponseWriter, err error) {
	var ie *auth.InputError
	var pe *auth.PolicyError
	switch {
	case errors.Is(err, auth.ErrSelf):
		writeError(w, http.StatusConflict, "own-account", sentence(err))
	case errors.Is(err, auth.ErrLastAdministrator):
		writeError(w, http.StatusConflict, "last-administrator", sentence(err))
	case errors.Is(err, auth.ErrOwnPassword):
		writeError(w, http.StatusConflict, "own-account", sentence(err))
	case errors.Is(err, auth.ErrUsernameTaken):
		writeError(w, http.StatusConflict, "username-taken", sentence(err))
	case errors.Is(err, auth.ErrRoleNotFound):
		writeError(w, http.StatusNotFound, "role-not-found", sentence(err))
	case errors.Is(err, auth.ErrRoleInUse):
		writeError(w, http.StatusConflict, "role-in-use", sentence(err))
	case errors.Is(err, auth.ErrBuiltInRole):
		writeError(w, http.StatusConflict, "built-in-role", sentence(err))
	case errors.Is(err, auth.ErrRoleExists):
		writeError(w, http.StatusConflict, "role-exists", sentence(err))
	case errors.Is(err, auth.ErrDirectoryAccount):
		writeError(w, http.StatusConflict, "external-account", sentence(err))
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "user-not-found", "No account has this username.")
	case errors.As(err, &pe):
		writeError(w, http.StatusBadRequest, "password-policy", sentence(err))
	case errors.As(err, &ie):
		writeError(w, http.StatusBadRequest, "invalid", sentence(err))
	default:
		s.log.Error("account change failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not make the change; see its log.")
	}
}

func (s *Server) apiListUsers(w http.ResponseWriter, r *http.Request, _ store.User) {
	users, err := s.Store.ListUsers(r.Context())
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	out := make([]accountJSON, 0, len(users))
	for _, u := range users {
		out = append(out, s.accountJSON(r, u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) apiGetUser(w http.ResponseWriter, r *http.Request, _ store.User) {
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.accountJSON(r, u))
}

func (s *Server) apiCreateUser(w http.ResponseWriter, r *http.Request, actor store.User) {
	var req struct {
		Username    string   `json:"username"`
		DisplayName string   `json:"displayName"`
		Password    string   `json:"password"`
		Roles       []string `json:"roles"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if c, _ := CallerFrom(r.Context()); len(req.Roles) > 0 && !c.Perms.Has(perm.UsersAssignRoles) {
		writeError(w, http.StatusForbidden, "forbidden", "Giving roles needs the permission users.assign-roles; create the account without roles.")
		return
	}
	r = managerCtx(r, actor)
	u, err := s.Lifecycle.Create(r.Context(), actor, auth.NewAccount{Username: req.Username, DisplayName: req.DisplayName,
		Password: req.Password, Roles: req.Roles})
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.accountJSON(r, u))
}

func (s *Server) apiDeleteUser(w http.ResponseWriter, r *http.Request, actor store.User) {
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	r = managerCtx(r, actor)
	if err := s.Lifecycle.Delete(r.Context(), actor, u.ID); err != nil {
		s.lifecycleError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) setEnabled(w http.ResponseWriter, r *http.Request, actor store.User, enabled bool) {
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	r = managerCtx(r, actor)
	if err := s.Lifecycle.SetEnabled(r.Context(), actor, u.ID, enabled); err != nil {
		s.lifecycleError(w, err)
		return
	}
	u, _ = s.Store.UserByID(r.Context(), u.ID)
	writeJSON(w, http.StatusOK, s.accountJSON(r, u))
}

func (s *Server) apiDisableUser(w http.ResponseWriter, r *http.Request, actor store.User) {
	s.setEnabled(w, r, actor, false)
}

func (s *Server) apiEnableUser(w http.ResponseWriter, r *http.Request, actor store.User) {
	s.setEnabled(w, r, actor, true)
}

func (s *Server) apiUnlockUser(w http.ResponseWriter, r *http.Request, actor store.User) {
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	r = managerCtx(r, actor)
	if err := s.Accounts.Unlock(r.Context(), actor, u.Username); err != nil {
		s.lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.accountJSON(r, u))
}

func (s *Server) apiResetPassword(w http.ResponseWriter, r *http.Request, actor store.User) {
	var req struct {
		Password string `json:"password"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	if u.Source != "" && u.Source != store.SourceLocal {
		s.lifecycleError(w, auth.ErrDirectoryAccount)
		return
	}
	r = managerCtx(r, actor)
	if err := s.Accounts.ResetPassword(r.Context(), actor, u.ID, req.Password); err != nil {
		s.lifecycleError(w, err)
		return
	}
	u, _ = s.Store.UserByID(r.Context(), u.ID)
	writeJSON(w, http.StatusOK, s.accountJSON(r, u))
}

func (s *Server) apiSetUserRoles(w http.ResponseWriter, r *http.Request, actor store.User) {
	var req struct {
		Roles []string `json:"roles"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	r = managerCtx(r, actor)
	if err := s.Lifecycle.SetRoles(r.Context(), actor, u.ID, req.Roles); err != nil {
		s.lifecycleError(w, err)
		return
	}
	u, _ = s.Store.UserByID(r.Context(), u.ID)
	writeJSON(w, http.StatusOK, s.accountJSON(r, u))
}

// sessionJSON is a session as the management API shows it. Its id is the
// base64url SHA-256 of the token, which cannot be turned back into it.
type sessionJSON struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	CreatedAt time.Time `json:"createdAt"`
	LastSeen  time.Time `json:"lastSeen"`
	ExpiresAt time.Time `json:"expiresAt"`
	Remote    string    `json:"remote"`
	Plane     string    `json:"plane"`
	Method    string    `json:"method"`
	Current   bool      `json:"current"`
}

func (s *Server) sessionsJSON(r *http.Request, f store.SessionFilter) ([]sessionJSON, error) {
	f.Now = s.now()
	list, err := s.Store.ListSessions(r.Context(), f)
	if err != nil {
		return nil, err
	}
	c, _ := CallerFrom(r.Context())
	names := map[int64]string{}
	out := make([]sessionJSON, 0, len(list))
	for _, ss := range list {
		name, ok := names[ss.UserID]
		if !ok {
			if u, err := s.Store.UserByID(r.Context(), ss.UserID); err == nil {
				name = u.Username
			}
			names[ss.UserID] = name
		}
		out = append(out, sessionJSON{ID: base64.RawURLEncoding.EncodeToString(ss.IDHash), Username: name,
			CreatedAt: ss.CreatedAt, LastSeen: ss.LastSeen, ExpiresAt: ss.ExpiresAt, Remote: ss.Remote,
			Plane: ss.Plane, Method: ss.Method, Current: string(ss.IDHash) == string(c.Session.IDHash)})
	}
	return out, nil
}

func (s *Server) apiUserSessions(w http.ResponseWriter, r *http.Request, _ store.User) {
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	list, err := s.sessionsJSON(r, store.SessionFilter{UserID: u.ID})
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (s *Server) apiEndUserSessions(w http.ResponseWriter, r *http.Request, actor store.User) {
	u, ok := s.targetUser(w, r)
	if !ok {
		return
	}
	r = managerCtx(r, actor)
	n, err := s.Lifecycle.EndSessions(r.Context(), actor, u.ID)
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"ended": n})
}

func (s *Server) apiListSessions(w http.ResponseWriter, r *http.Request, _ store.User) {
	list, err := s.sessionsJSON(r, store.SessionFilter{})
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (s *Server) apiEndSession(w http.ResponseWriter, r *http.Request, actor store.User) {
	hash, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil || len(hash) == 0 {
		writeError(w, http.StatusNotFound, "session-not-found", "No session has this id.")
		return
	}
	ss, err := s.Store.SessionByID(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "session-not-found", "No session has this id.")
		return
	}
	if err == nil {
		err = s.Store.DeleteSession(r.Context(), hash)
	}
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	target := ""
	if u, err := s.Store.UserByID(r.Context(), ss.UserID); err == nil {
		target = u.Username
	}
	s.audited(r, actor, "session-ended", target)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiCreateEnrolment(w http.ResponseWriter, r *http.Request, actor store.User) {
	var req struct {
		Admin bool `json:"admin"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	role := store.RoleUser
	if req.Admin {
		if c, _ := CallerFrom(r.Context()); !c.Perms.Has(perm.UsersAssignRoles) {
			writeError(w, http.StatusForbidden, "forbidden", "A link for an administrator needs the permission users.assign-roles.")
			return
		}
		role = store.RoleAdmin
	}
	token, err := s.Enroller.Create(r.Context(), role)
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	s.audited(r, actor, "enrolment-created", string(role))
	writeJSON(w, http.StatusCreated, map[string]any{"link": s.PublicURL + "/enrol#" + token,
		"expiresAt": s.now().Add(auth.DefaultEnrolmentTTL)})
}

// Roles.

func (s *Server) apiListPermissions(w http.ResponseWriter, r *http.Request, _ store.User) {
	writeJSON(w, http.StatusOK, map[string]any{"permissions": perm.All})
}

func (s *Server) apiListRoles(w http.ResponseWriter, r *http.Request, _ store.User) {
	roles, err := s.Roles.List(r.Context())
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	type roleJSON struct {
		perm.Role
		Holders int `json:"holders"`
	}
	out := make([]roleJSON, 0, len(roles))
	for _, ro := range roles {
		n, _ := s.Store.CountRoleHolders(r.Context(), ro.Name)
		out = append(out, roleJSON{Role: ro, Holders: n})
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

type roleRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Permissions []perm.Permission `json:"permissions"`
}

func (s *Server) saveRole(w http.ResponseWriter, r *http.Request, actor store.User, req roleRequest, create bool) {
	r = managerCtx(r, actor)
	ro, err := s.Roles.Save(r.Context(), actor.Username, perm.Role{Name: req.Name, Description: req.Description,
		Permissions: req.Permissions}, create)
	if err != nil {
		s.lifecycleError(w, err)
		return
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeJSON(w, status, ro)
}

func (s *Server) apiCreateRole(w http.ResponseWriter, r *http.Request, actor store.User) {
	var req roleRequest
	if !readJSON(w, r, &req) {
		return
	}
	s.saveRole(w, r, actor, req, true)
}

func (s *Server) apiUpdateRole(w http.ResponseWriter, r *http.Request, actor store.User) {
	var req roleRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Name != "" && req.Name != r.PathValue("name") {
		writeError(w, http.StatusBadRequest, "invalid", "The name in the body differs from the one in the path; roles cannot be renamed.")
		return
	}
	req.Name = r.PathValue("name")
	s.saveRole(w, r, actor, req, false)
}

func (s *Server) apiDeleteRole(w http.ResponseWriter, r *http.Request, actor store.User) {
	r = managerCtx(r, actor)
	if err := s.Roles.Delete(r.Context(), actor.Username, r.PathValue("name")); err != nil {
		s.lifecycleError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
