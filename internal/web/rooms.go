package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/store"
)

// roomJSON is a room as the admin API shows it. PINs are never returned,
// only whether they are set.
type roomJSON struct {
	Alias            string `json:"alias"`
	Name             string `json:"name"`
	URL              string `json:"url"`
	Participants     int    `json:"participants"`
	Access           string `json:"access"`
	HasHostPIN       bool   `json:"hasHostPin"`
	HasGuestPIN      bool   `json:"hasGuestPin"`
	AllowGuests      bool   `json:"allowGuests"`
	GuestsMayUnmute  bool   `json:"guestsMayUnmute"`
	GuestsMayPresent bool   `json:"guestsMayPresent"`
	MembersOnly      bool   `json:"membersOnly"`
}

func (s *Server) roomJSON(r store.Room) roomJSON {
	return roomJSON{Alias: r.Alias, Name: r.DisplayName, URL: s.roomURL(r.Alias), Participants: s.Meetings.Participants(r.Alias),
		Access: string(r.Access), HasHostPIN: r.HostPINHash != "", HasGuestPIN: r.GuestPINHash != "",
		AllowGuests: r.AllowGuests, GuestsMayUnmute: r.GuestsMayUnmute, GuestsMayPresent: r.GuestsMayPresent, MembersOnly: r.MembersOnly}
}

// roomRequest is the body of room creation and update. Absent fields are
// left unchanged (update) or take their defaults (creation).
type roomRequest struct {
	Alias            string  `json:"alias"`
	Name             *string `json:"name"`
	Access           *string `json:"access"`
	HostPIN          *string `json:"hostPin"`
	GuestPIN         *string `json:"guestPin"`
	AllowGuests      *bool   `json:"allowGuests"`
	GuestsMayUnmute  *bool   `json:"guestsMayUnmute"`
	GuestsMayPresent *bool   `json:"guestsMayPresent"`
	MembersOnly      *bool   `json:"membersOnly"`
}

// apply writes the request's fields into r; it answers the request and
// returns false when a field is invalid.
func (s *Server) applyRoomRequest(w http.ResponseWriter, req roomRequest, r *store.Room) bool {
	if req.Name != nil {
		name := strings.TrimSpace(*req.Name)
		if name == "" {
			name = r.Alias
		}
		if len([]rune(name)) > 128 {
			writeError(w, http.StatusBadRequest, "invalid-name", "The room name is longer than 128 characters.")
			return false
		}
		r.DisplayName = name
	}
	if req.Access != nil {
		a := store.Access(*req.Access)
		if !a.Valid() {
			writeError(w, http.StatusBadRequest, "invalid-access", "The access mode must be open, pin or accounts.")
			return false
		}
		r.Access = a
	}
	pins := []struct {
		value *string
		hash  *string
		what  string
	}{{req.HostPIN, &r.HostPINHash, "host"}, {req.GuestPIN, &r.GuestPINHash, "guest"}}
	// The PINs must differ: compared as typed, or a new one verified
	// against the other's stored (salted) hash.
	var newPIN, keptHash [2]string
	for i, pin := range pins {
		if pin.value == nil {
			keptHash[i] = *pin.hash
			continue
		}
		if *pin.value == "" {
			continue
		}
		if err := auth.CheckPIN(*pin.value, s.PINMinLength); err != nil {
			writeError(w, http.StatusBadRequest, "invalid-pin", "The "+pin.what+" PIN is not valid: "+err.Error()+".")
			return false
		}
		newPIN[i] = *pin.value
	}
	if err := auth.CheckPINsDiffer(newPIN[0], newPIN[1], keptHash[0], keptHash[1]); err != nil {
		writeError(w, http.StatusBadRequest, "invalid-pin", sentence(err))
		return false
	}
	for _, pin := range pins {
		if pin.value == nil {
			continue
		}
		if *pin.value == "" {
			*pin.hash = ""
			continue
		}
		h, err := auth.HashPIN(*pin.value)
		if err != nil {
			s.log.Error("hash PIN failed", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "The server could not store the PIN.")
			return false
		}
		*pin.hash = h
	}
	set := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	set(&r.AllowGuests, req.AllowGuests)
	set(&r.GuestsMayUnmute, req.GuestsMayUnmute)
	set(&r.GuestsMayPresent, req.GuestsMayPresent)
	set(&r.MembersOnly, req.MembersOnly)
	if r.Access == store.AccessPIN && r.HostPINHash == "" {
		writeError(w, http.StatusBadRequest, "invalid-access", "A room entered by PIN needs a host PIN.")
		return false
	}
	return true
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
		out = append(out, s.roomJSON(room))
	}
	writeJSON(w, http.StatusOK, map[string][]roomJSON{"rooms": out})
}

func (s *Server) apiCreateRoom(w http.ResponseWriter, r *http.Request, u store.User) {
	var req roomRequest
	if !readJSON(w, r, &req) {
		return
	}
	alias := strings.ToLower(strings.TrimSpace(req.Alias))
	if err := store.ValidAlias(alias); err != nil {
		writeError(w, http.StatusBadRequest, "invalid-alias", sentence(err))
		return
	}
	room := store.DefaultRoomAccess(store.Room{Alias: alias, DisplayName: alias, OwnerID: u.ID, CreatedAt: time.Now()})
	if !s.applyRoomRequest(w, req, &room) {
		return
	}
	room, err := s.Store.CreateRoom(r.Context(), room)
	if errors.Is(err, store.ErrExists) {
		writeError(w, http.StatusConflict, "room-exists", "A room with this alias already exists.")
		return
	}
	if err != nil {
		s.log.Error("create room failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not create the room.")
		return
	}
	s.audited(r, u, "room-created", room.Alias)
	writeJSON(w, http.StatusCreated, s.roomJSON(room))
}

func (s *Server) apiUpdateRoom(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := s.roomFor(w, r)
	if !ok {
		return
	}
	var req roomRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Alias != "" && !strings.EqualFold(req.Alias, room.Alias) {
		writeError(w, http.StatusBadRequest, "invalid-alias", "A room's alias cannot be changed.")
		return
	}
	if !s.applyRoomRequest(w, req, &room) {
		return
	}
	if err := s.Store.UpdateRoom(r.Context(), room); err != nil {
		s.log.Error("update room failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not update the room.")
		return
	}
	s.audited(r, u, "room-updated", room.Alias)
	writeJSON(w, http.StatusOK, s.roomJSON(room))
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
	s.audited(r, u, "room-deleted", alias)
	w.WriteHeader(http.StatusNoContent)
}

// roomFor loads the room named in the path, or answers 404.
func (s *Server) roomFor(w http.ResponseWriter, r *http.Request) (store.Room, bool) {
	room, err := s.Store.RoomByAlias(r.Context(), r.PathValue("alias"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "room-not-found", "No room has this alias.")
		return room, false
	}
	if err != nil {
		s.log.Error("room lookup failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not look up the room.")
		return room, false
	}
	return room, true
}

type memberJSON struct {
	Username    string `json:"username"`
	DisplayName string `json:"displayName"`
	Role        string `json:"role"`
}

func (s *Server) apiListMembers(w http.ResponseWriter, r *http.Request, _ store.User) {
	room, ok := s.roomFor(w, r)
	if !ok {
		return
	}
	members, err := s.Store.RoomMembers(r.Context(), room.ID)
	if err != nil {
		s.log.Error("list members failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not list the members.")
		return
	}
	out := make([]memberJSON, 0, len(members))
	for _, m := range members {
		mj := memberJSON{Username: m.Username, DisplayName: m.Username, Role: string(m.Role)}
		if u, err := s.Store.UserByID(r.Context(), m.UserID); err == nil {
			mj.DisplayName = u.DisplayName
		}
		out = append(out, mj)
	}
	writeJSON(w, http.StatusOK, map[string][]memberJSON{"members": out})
}

func (s *Server) memberTarget(w http.ResponseWriter, r *http.Request) (store.Room, store.User, bool) {
	room, ok := s.roomFor(w, r)
	if !ok {
		return room, store.User{}, false
	}
	user, err := s.Store.UserByName(r.Context(), r.PathValue("username"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "user-not-found", "No account has this username.")
		return room, user, false
	}
	if err != nil {
		s.log.Error("user lookup failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not look up the account.")
		return room, user, false
	}
	return room, user, true
}

func (s *Server) apiSetMember(w http.ResponseWriter, r *http.Request, u store.User) {
	room, user, ok := s.memberTarget(w, r)
	if !ok {
		return
	}
	var req struct {
		Role string `json:"role"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	role := store.MemberRole(req.Role)
	if !role.Valid() {
		writeError(w, http.StatusBadRequest, "invalid-role", "The member role must be host or member.")
		return
	}
	if err := s.Store.AddRoomMember(r.Context(), room.ID, user.ID, role); err != nil {
		s.log.Error("add member failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not add the member.")
		return
	}
	s.audited(r, u, "room-member-set", room.Alias+":"+user.Username+":"+string(role))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiRemoveMember(w http.ResponseWriter, r *http.Request, u store.User) {
	room, user, ok := s.memberTarget(w, r)
	if !ok {
		return
	}
	err := s.Store.RemoveRoomMember(r.Context(), room.ID, user.ID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "user-not-found", "This account is not a member of the room.")
		return
	}
	if err != nil {
		s.log.Error("remove member failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not remove the member.")
		return
	}
	s.audited(r, u, "room-member-removed", room.Alias+":"+user.Username)
	w.WriteHeader(http.StatusNoContent)
}

// audited records an administrator's change in the audit log.
func (s *Server) audited(r *http.Request, u store.User, action, target string) {
	if s.Audit == nil {
		return
	}
	err := s.Audit.Record(r.Context(), audit.Event{Actor: u.Username, Source: clientAddr(r), Action: action,
		Target: target, Outcome: audit.OutcomeSuccess})
	if err != nil {
		s.log.Error("audit record failed", "action", action, "err", err)
	}
}
