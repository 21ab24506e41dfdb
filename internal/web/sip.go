package web

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"conclave/internal/auth"
	"conclave/internal/devca"
	"conclave/internal/guard"
	"conclave/internal/perm"
	"conclave/internal/pki"
	"conclave/internal/sipedge"
	"conclave/internal/store"
)

// Telephony is the SIP side of the API (docs/sip.md, docs/api.md); nil in
// Config when SIP is off.
type Telephony struct {
	CA   *devca.Authority
	Edge *sipedge.Edge
	CDRs *sipedge.CDRLog
	// Guard counts wrong enrolment tokens against the sender's address.
	Guard *guard.Guard
	// Registrar is the host:port devices register at.
	Registrar string
	// AllowSDES says whether SDES-SRTP calls (not end-to-end) are allowed.
	AllowSDES bool
	// RequireDigest says whether devices need their digest secret too.
	RequireDigest bool
	// Devices lists certificates; store.SQLite is one.
	Devices store.DeviceStore
}

// sipRoutes are the telephony rows of the route table. They exist whether
// or not SIP is on; with SIP off they answer 404.
func (s *Server) sipRoutes(m func(method, path string, p perm.Permission, h ManageFunc) Route) []Route {
	on := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.Telephony == nil {
				writeError(w, http.StatusNotFound, "sip-off", "SIP is not enabled on this server (--sip-listen).")
				return
			}
			h(w, r)
		}
	}
	onM := func(h ManageFunc) ManageFunc {
		return func(w http.ResponseWriter, r *http.Request, u store.User) {
			if s.Telephony == nil {
				writeError(w, http.StatusNotFound, "sip-off", "SIP is not enabled on this server (--sip-listen).")
				return
			}
			h(w, r, u)
		}
	}
	return []Route{
		{Method: "GET", Path: "/telephony", Where: Both, Handle: s.page("telephony.html")},
		{Method: "GET", Path: devca.CRLPath, Where: Both, Handle: on(func(w http.ResponseWriter, r *http.Request) {
			s.Telephony.CA.CRLHandler().ServeHTTP(w, r)
		})},
		{Method: "GET", Path: devca.OCSPPath + "/", Where: Both, Handle: on(func(w http.ResponseWriter, r *http.Request) {
			s.Telephony.CA.OCSPHandler().ServeHTTP(w, r)
		})},
		{Method: "POST", Path: devca.OCSPPath, Where: Both, Handle: on(func(w http.ResponseWriter, r *http.Request) {
			s.Telephony.CA.OCSPHandler().ServeHTTP(w, r)
		})},
		{Method: "GET", Path: "/pki/device-ca.crt", Where: Both, Handle: on(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-pem-file")
			w.Write(s.Telephony.CA.CAPEM())
		})},
		{Method: "GET", Path: "/api/sip", Where: Both, Handle: on(s.apiSIPInfo)},
		{Method: "POST", Path: "/api/sip/enrol", Where: Both, Handle: on(s.apiSIPEnrol)},
		{Method: "POST", Path: "/api/me/sip/tokens", Where: Both, Handle: on(s.apiSIPMyToken)},
		{Method: "GET", Path: "/api/me/sip/devices", Where: Both, Handle: on(s.apiSIPMyDevices)},
		{Method: "POST", Path: "/api/me/sip/devices/{serial}/revoke", Where: Both, Handle: on(s.apiSIPMyRevoke)},
		m("POST", "/api/sip/tokens", perm.DevicesManage, onM(s.apiSIPToken)),
		m("GET", "/api/sip/devices", perm.DevicesView, onM(s.apiSIPDevices)),
		m("POST", "/api/sip/devices/{serial}/revoke", perm.DevicesManage, onM(s.apiSIPRevoke)),
		m("GET", "/api/sip/registrations", perm.DevicesView, onM(s.apiSIPRegistrations)),
		m("GET", "/api/sip/calls", perm.CallRecordsView, onM(s.apiSIPCalls)),
	}
}

// signedIn returns the user of a request from any signed-in account, with the CSRF check on
// state-changing requests.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	sess, u, ok := s.session(w, r)
	if !ok {
		return store.User{}, false
	}
	if !s.passwordCurrent(w, u) {
		return store.User{}, false
	}
	if r.Method != http.MethodGet && (!sameOrigin(r) || !auth.ValidCSRF(sess, r.Header.Get(csrfHeader))) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return store.User{}, false
	}
	return u, true
}

type sipInfoJSON struct {
	Domain    string `json:"domain"`
	Registrar string `json:"registrar"`
	AllowSDES bool   `json:"allowSDES"`
	CA        string `json:"ca"`
}

func (s *Server) apiSIPInfo(w http.ResponseWriter, r *http.Request) {
	t := s.Telephony
	writeJSON(w, http.StatusOK, sipInfoJSON{Domain: t.CA.Domain(), Registrar: t.Registrar, AllowSDES: t.AllowSDES, CA: string(t.CA.CAPEM())})
}

type enrolResultJSON struct {
	Username    string `json:"username"`
	AOR         string `json:"aor"`
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	Fingerprint string `json:"fingerprint"`
	Serial      string `json:"serial"`
	NotAfter    string `json:"notAfter"`
	// DigestPassword is shown once; DigestRequired says whether the
	// registrar asks for it.
	DigestPassword string `json:"digestPassword"`
	DigestRequired bool   `json:"digestRequired"`
	sipInfoJSON
}

// apiSIPEnrol redeems an enrolment token with a PKCS#10 request. It needs
// no session (the token is the credential), so wrong tokens count against
// the sender's address like wrong PINs.
func (s *Server) apiSIPEnrol(w http.ResponseWriter, r *http.Request) {
	t := s.Telephony
	addr, _ := netip.ParseAddr(clientAddr(r))
	addr = addr.Unmap()
	if t.Guard.Check(addr, "") != nil {
		writeError(w, http.StatusForbidden, "bad-token", devca.ErrBadToken.Error())
		return
	}
	var req struct {
		Token string `json:"token"`
		CSR   string `json:"csr"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	iss, err := t.CA.Enrol(r.Context(), req.Token, []byte(req.CSR), addr.String())
	var ce *devca.CSRError
	switch {
	case errors.Is(err, devca.ErrBadToken):
		t.Guard.Fail(addr, "", guard.UnknownRoom)
		writeError(w, http.StatusForbidden, "bad-token", err.Error())
		return
	case errors.As(err, &ce):
		writeError(w, http.StatusBadRequest, "bad-csr", sentence(err))
		return
	case err != nil:
		s.log.Error("device enrolment", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The certificate could not be issued; try again.")
		return
	}
	writeJSON(w, http.StatusOK, enrolResultJSON{Username: iss.Username, AOR: iss.AOR, Certificate: string(iss.CertPEM),
		CA: string(iss.CAPEM), Fingerprint: pkiFingerprint(iss), Serial: devca.SerialString(iss.Cert.SerialNumber),
		NotAfter: iss.Cert.NotAfter.UTC().Format(time.RFC3339), DigestPassword: iss.DigestPassword, DigestRequired: t.RequireDigest,
		sipInfoJSON: sipInfoJSON{Domain: t.CA.Domain(), Registrar: t.Registrar, AllowSDES: t.AllowSDES}})
}

type tokenJSON struct {
	Token   string `json:"token"`
	User    string `json:"user"`
	AOR     string `json:"aor"`
	Expires string `json:"expires"`
}

func (s *Server) makeToken(w http.ResponseWriter, r *http.Request, u store.User, by string) {
	tok, exp, err := s.Telephony.CA.CreateToken(r.Context(), u, by, clientAddr(r))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad-request", sentence(err))
		return
	}
	writeJSON(w, http.StatusOK, tokenJSON{Token: tok, User: u.Username, AOR: s.Telephony.CA.AOR(u.Username), Expires: exp.UTC().Format(time.RFC3339)})
}

func (s *Server) apiSIPMyToken(w http.ResponseWriter, r *http.Request) {
	u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	s.makeToken(w, r, u, u.Username)
}

func (s *Server) apiSIPToken(w http.ResponseWriter, r *http.Request, admin store.User) {
	var req struct {
		Username string `json:"username"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	u, err := s.Store.UserByName(r.Context(), req.Username)
	if err != nil {
		writeError(w, http.StatusNotFound, "not-found", "No account is called "+strconv.Quote(req.Username)+".")
		return
	}
	s.makeToken(w, r, u, admin.Username)
}

type deviceJSON struct {
	Serial      string `json:"serial"`
	User        string `json:"user"`
	AOR         string `json:"aor"`
	Fingerprint string `json:"fingerprint"`
	Key         string `json:"key"`
	Issued      string `json:"issued"`
	NotAfter    string `json:"notAfter"`
	Revoked     string `json:"revoked,omitempty"`
	Online      bool   `json:"online"`
}

func (s *Server) listDevices(ctx context.Context, userID int64) ([]deviceJSON, error) {
	certs, err := s.Telephony.Devices.ListDeviceCerts(ctx, userID)
	if err != nil {
		return nil, err
	}
	online := map[string]bool{}
	for _, reg := range s.Telephony.Edge.Registrations() {
		online[reg.Serial] = true
	}
	out := make([]deviceJSON, 0, len(certs))
	for _, c := range certs {
		d := deviceJSON{Serial: c.Serial, AOR: c.AOR, Fingerprint: c.Fingerprint, Key: c.KeyType,
			Issued: c.IssuedAt.Format(time.RFC3339), NotAfter: c.NotAfter.Format(time.RFC3339), Online: online[c.Serial]}
		if u, err := s.Store.UserByID(ctx, c.UserID); err == nil {
			d.User = u.Username
		}
		if !c.RevokedAt.IsZero() {
			d.Revoked = c.RevokedAt.Format(time.RFC3339)
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *Server) apiSIPMyDevices(w http.ResponseWriter, r *http.Request) {
	u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	s.writeDevices(w, r, u.ID)
}

func (s *Server) apiSIPDevices(w http.ResponseWriter, r *http.Request, _ store.User) {
	var id int64
	if name := r.URL.Query().Get("user"); name != "" {
		u, err := s.Store.UserByName(r.Context(), name)
		if err != nil {
			writeError(w, http.StatusNotFound, "not-found", "No account is called "+strconv.Quote(name)+".")
			return
		}
		id = u.ID
	}
	s.writeDevices(w, r, id)
}

func (s *Server) writeDevices(w http.ResponseWriter, r *http.Request, userID int64) {
	list, err := s.listDevices(r.Context(), userID)
	if err != nil {
		s.log.Error("list devices", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The devices could not be listed.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": list})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, by string, owner int64) {
	var req struct {
		Reason int `json:"reason"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &req) {
		return
	}
	serial := r.PathValue("serial")
	if owner != 0 {
		c, err := s.Telephony.Devices.DeviceCertBySerial(r.Context(), serial)
		if err != nil || c.UserID != owner {
			writeError(w, http.StatusNotFound, "not-found", "You have no device with that serial number.")
			return
		}
	}
	c, err := s.Telephony.CA.Revoke(r.Context(), serial, req.Reason, by, clientAddr(r))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not-found", "No device certificate has that serial number.")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad-request", sentence(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": c.Serial, "revoked": c.RevokedAt.Format(time.RFC3339)})
}

func (s *Server) apiSIPMyRevoke(w http.ResponseWriter, r *http.Request) {
	u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	s.revoke(w, r, u.Username, u.ID)
}

func (s *Server) apiSIPRevoke(w http.ResponseWriter, r *http.Request, admin store.User) {
	s.revoke(w, r, admin.Username, 0)
}

func (s *Server) apiSIPRegistrations(w http.ResponseWriter, r *http.Request, _ store.User) {
	writeJSON(w, http.StatusOK, map[string]any{"registrations": s.Telephony.Edge.Registrations(),
		"calls": s.Telephony.Edge.ActiveCalls()})
}

// apiSIPCalls returns the call detail records, opened, to roles with
// call-records.view (the auditor's).
func (s *Server) apiSIPCalls(w http.ResponseWriter, r *http.Request, _ store.User) {
	recs, err := s.Telephony.CDRs.List(r.Context(), time.Time{}, time.Time{}, 500)
	if err != nil {
		s.log.Error("call records", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", sentence(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"calls": recs})
}

func pkiFingerprint(iss devca.Issued) string { return pki.Fingerprint(iss.Cert) }
