package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"conclave/docs"
	"conclave/internal/authn"
	"conclave/internal/store"
)

// settingsAnswer is what GET /api/settings/* returns: the settings without
// their secret, whether a secret is set, and whether the command line
// fixes them.
type settingsAnswer struct {
	Settings  any  `json:"settings"`
	HasSecret bool `json:"hasSecret"`
	Fixed     bool `json:"fixed"`
}

func (s *Server) settingsError(w http.ResponseWriter, err error) {
	var ie *authn.InputError
	switch {
	case errors.Is(err, authn.ErrFixed):
		writeError(w, http.StatusConflict, "settings-fixed", sentence(err))
	case errors.As(err, &ie):
		writeError(w, http.StatusBadRequest, "invalid", sentence(err))
	default:
		s.log.Error("settings failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not read or store the settings.")
	}
}

func (s *Server) settingsChanged(r *http.Request, u store.User, what string) {
	s.audited(r, u, "config-changed", what)
}

func (s *Server) apiGetLDAP(w http.ResponseWriter, r *http.Request, _ store.User) {
	v, fixed, err := s.AuthSettings.LDAP(r.Context())
	if err != nil {
		s.settingsError(w, err)
		return
	}
	has := v.BindPassword != ""
	v.BindPassword = ""
	writeJSON(w, http.StatusOK, settingsAnswer{Settings: v, HasSecret: has, Fixed: fixed})
}

func (s *Server) apiSetLDAP(w http.ResponseWriter, r *http.Request, u store.User) {
	var v authn.LDAPSettings
	if !readJSON(w, r, &v) {
		return
	}
	if err := s.AuthSettings.SetLDAP(r.Context(), v, s.now()); err != nil {
		s.settingsError(w, err)
		return
	}
	s.settingsChanged(r, u, "ldap")
	s.apiGetLDAP(w, r, u)
}

// apiTestLDAP connects to the directory with the stored (or given)
// settings and binds with the service account.
func (s *Server) apiTestLDAP(w http.ResponseWriter, r *http.Request, u store.User) {
	v, _, err := s.AuthSettings.LDAP(r.Context())
	if err != nil {
		s.settingsError(w, err)
		return
	}
	s.audited(r, u, "ldap-tested", v.URL)
	if err := authn.TestLDAP(r.Context(), v); err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": sentence(err)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

func (s *Server) apiGetOIDC(w http.ResponseWriter, r *http.Request, _ store.User) {
	v, fixed, err := s.AuthSettings.OIDC(r.Context())
	if err != nil {
		s.settingsError(w, err)
		return
	}
	has := v.ClientSecret != ""
	v.ClientSecret = ""
	writeJSON(w, http.StatusOK, map[string]any{"settings": v, "hasSecret": has, "fixed": fixed,
		"redirectUrl": s.oidcRedirectURL()})
}

func (s *Server) apiSetOIDC(w http.ResponseWriter, r *http.Request, u store.User) {
	var v authn.OIDCSettings
	if !readJSON(w, r, &v) {
		return
	}
	if err := s.AuthSettings.SetOIDC(r.Context(), v, s.now()); err != nil {
		s.settingsError(w, err)
		return
	}
	s.settingsChanged(r, u, "oidc")
	s.apiGetOIDC(w, r, u)
}

func (s *Server) apiGetCert(w http.ResponseWriter, r *http.Request, _ store.User) {
	v, fixed, err := s.AuthSettings.Cert(r.Context())
	if err != nil {
		s.settingsError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, settingsAnswer{Settings: v, Fixed: fixed})
}

func (s *Server) apiSetCert(w http.ResponseWriter, r *http.Request, u store.User) {
	var v authn.CertSettings
	if !readJSON(w, r, &v) {
		return
	}
	if c, ok := CallerFrom(r.Context()); ok && v.Required && c.Session.Method != "certificate" {
		writeError(w, http.StatusConflict, "certificate-first",
			"Sign in with a client certificate before requiring it, so that you know it works.")
		return
	}
	if err := s.AuthSettings.SetCert(r.Context(), v, s.now()); err != nil {
		s.settingsError(w, err)
		return
	}
	s.settingsChanged(r, u, "certificate-login")
	s.apiGetCert(w, r, u)
}

var (
	openAPIOnce sync.Once
	openAPIJSON []byte
	openAPIErr  error
)

// OpenAPIDocument loads docs/openapi.yaml (embedded in the binary) and
// checks that it is a valid OpenAPI 3 document.
func OpenAPIDocument() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(docs.OpenAPI)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, err
	}
	return doc, nil
}

// apiOpenAPI serves the management API's OpenAPI 3 document as JSON, with
// this server as its server URL.
func (s *Server) apiOpenAPI(w http.ResponseWriter, r *http.Request) {
	openAPIOnce.Do(func() {
		doc, err := OpenAPIDocument()
		if err != nil {
			openAPIErr = err
			return
		}
		openAPIJSON, openAPIErr = json.Marshal(doc)
	})
	if openAPIErr != nil {
		s.log.Error("the OpenAPI document is invalid", "err", openAPIErr)
		writeError(w, http.StatusInternalServerError, "internal", "The API document of this build is invalid.")
		return
	}
	var doc map[string]any
	_ = json.Unmarshal(openAPIJSON, &doc)
	doc["servers"] = []map[string]string{{"url": strings.TrimRight(s.PublicURL, "/")}}
	writeJSON(w, http.StatusOK, doc)
}
