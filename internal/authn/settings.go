// Package authn holds Conclave's sign-in methods beyond local passwords:
// a directory (LDAPv3 over StartTLS or LDAPS, never in clear), OpenID
// Connect single sign-on (authorization code flow with PKCE), and
// administrators' client certificates (identity in the subject CN or the
// SAN UPN, revocation by CRL or OCSP). It also keeps their settings: in
// the database, editable from the admin page and API, unless the command
// line sets them (then they are read-only there).
package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"conclave/internal/pki"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// Use says which accounts a sign-in method serves.
type Use string

// The uses of a directory or single sign-on provider.
const (
	// UseUsers: meeting users only (management roles it maps are ignored).
	UseUsers Use = "users"
	// UseAdmins: administrators only (someone without a mapped management
	// role is refused).
	UseAdmins Use = "admins"
	// UseBoth: everyone it knows; those with a mapped management role are
	// administrators.
	UseBoth Use = "both"
)

// Valid reports whether u is one of the uses.
func (u Use) Valid() bool { return u == UseUsers || u == UseAdmins || u == UseBoth }

// GroupRoles maps a directory group (its DN) or an OIDC claim value to
// Conclave management roles.
type GroupRoles struct {
	Group string   `json:"group"`
	Roles []string `json:"roles"`
}

// LDAPSettings configure directory sign-in.
type LDAPSettings struct {
	Enabled bool `json:"enabled"`
	// URL is ldap://host[:389] (the connection is upgraded with StartTLS
	// before anything is sent) or ldaps://host[:636]. There is no clear
	// mode.
	URL string `json:"url"`
	// CACert is the PEM of the CA certificates to trust for the
	// directory; empty means the system's.
	CACert string `json:"caCert"`
	// BindDN and BindPassword are the read-only service account that
	// searches for users. BindPassword is never returned by the API.
	BindDN       string `json:"bindDn"`
	BindPassword string `json:"bindPassword,omitempty"`
	// UserBase and UserFilter find a user: {username} in the filter is
	// replaced by the escaped username.
	UserBase   string `json:"userBase"`
	UserFilter string `json:"userFilter"`
	// UsernameAttribute and DisplayNameAttribute name the attributes read
	// from the user's entry.
	UsernameAttribute    string `json:"usernameAttribute"`
	DisplayNameAttribute string `json:"displayNameAttribute"`
	// GroupBase and GroupFilter find the user's groups: {dn} is replaced
	// by the escaped DN of the user.
	GroupBase   string `json:"groupBase"`
	GroupFilter string `json:"groupFilter"`
	// Groups map group DNs to management roles.
	Groups []GroupRoles `json:"groups"`
	// Use says whom the directory signs in.
	Use Use `json:"use"`
	// TimeoutSeconds bounds each directory operation.
	TimeoutSeconds int `json:"timeoutSeconds"`
}

// OIDCSettings configure single sign-on.
type OIDCSettings struct {
	Enabled bool `json:"enabled"`
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer + "/.well-known/openid-configuration").
	Issuer string `json:"issuer"`
	// ClientID and ClientSecret are Conclave's registration at the
	// provider. ClientSecret is never returned by the API.
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret,omitempty"`
	// Scopes asked for besides "openid".
	Scopes []string `json:"scopes"`
	// UsernameClaim, DisplayNameClaim and RolesClaim name the claims read
	// from the ID token (and the userinfo endpoint).
	UsernameClaim    string `json:"usernameClaim"`
	DisplayNameClaim string `json:"displayNameClaim"`
	RolesClaim       string `json:"rolesClaim"`
	// Groups map values of RolesClaim to management roles.
	Groups []GroupRoles `json:"groups"`
	// Use says whom the provider signs in; administrators only when the
	// operator allows it (admins or both).
	Use Use `json:"use"`
}

// CertSettings configure administrators' client-certificate sign-in.
type CertSettings struct {
	Enabled bool `json:"enabled"`
	// CACert is the PEM of the CA certificates that issue administrators'
	// certificates.
	CACert string `json:"caCert"`
	// Identity says where the username is read: "cn" (subject common
	// name), "upn" (the SAN otherName UPN, as smart cards carry) or
	// "auto" (the UPN if present, else the CN).
	Identity string `json:"identity"`
	// Required: administrators sign in only with a certificate; a password
	// (local, directory or single sign-on) alone is refused for them.
	Required bool `json:"required"`
	// CRL is the PEM or DER (base64 in JSON) of the issuer's certificate
	// revocation list; CRLURL, if set, is fetched (and cached until its
	// next update) instead.
	CRL    string `json:"crl"`
	CRLURL string `json:"crlUrl"`
	// OCSP asks the OCSP responder named in the certificate (or OCSPURL)
	// whether it is revoked; an unreachable responder refuses the login.
	OCSP    bool   `json:"ocsp"`
	OCSPURL string `json:"ocspUrl"`
}

// Keys under which the settings are stored.
const (
	keyLDAP = "authn.ldap"
	keyOIDC = "authn.oidc"
	keyCert = "authn.certificate"
)

// DefaultLDAP returns the settings of a new directory configuration.
func DefaultLDAP() LDAPSettings {
	return LDAPSettings{
		UserFilter:           "(&(objectClass=person)(uid={username}))",
		UsernameAttribute:    "uid",
		DisplayNameAttribute: "cn",
		GroupFilter:          "(|(member={dn})(uniqueMember={dn}))",
		Use:                  UseBoth,
		TimeoutSeconds:       10,
	}
}

// DefaultOIDC returns the settings of a new single sign-on configuration.
func DefaultOIDC() OIDCSettings {
	return OIDCSettings{Scopes: []string{"profile", "email"}, UsernameClaim: "preferred_username",
		DisplayNameClaim: "name", RolesClaim: "groups", Use: UseUsers}
}

// DefaultCert returns the settings of a new certificate login
// configuration.
func DefaultCert() CertSettings { return CertSettings{Identity: "auto"} }

// Timeout returns the bound of one directory operation.
func (s LDAPSettings) Timeout() time.Duration {
	if s.TimeoutSeconds <= 0 {
		return 10 * time.Second
	}
	return time.Duration(s.TimeoutSeconds) * time.Second
}

// Check reports what is wrong with enabled settings, as a sentence.
func (s LDAPSettings) Check() error {
	if !s.Enabled {
		return nil
	}
	u := strings.ToLower(s.URL)
	switch {
	case strings.HasPrefix(u, "ldap://"), strings.HasPrefix(u, "ldaps://"):
	default:
		return errors.New("the directory URL must start with ldap:// (StartTLS) or ldaps://; there is no clear-text mode")
	}
	if s.CACert != "" {
		if _, err := pki.CertPool([]byte(s.CACert)); err != nil {
			return fmt.Errorf("the directory CA: %w", err)
		}
	}
	if s.UserBase == "" || !strings.Contains(s.UserFilter, "{username}") {
		return errors.New("the directory needs a user base and a user filter containing {username}")
	}
	if s.GroupBase != "" && !strings.Contains(s.GroupFilter, "{dn}") {
		return errors.New("the group filter must contain {dn}")
	}
	if !s.Use.Valid() {
		return errors.New("use must be users, admins or both")
	}
	return nil
}

// Check reports what is wrong with enabled settings, as a sentence.
func (s OIDCSettings) Check() error {
	if !s.Enabled {
		return nil
	}
	if !strings.HasPrefix(s.Issuer, "https://") && !strings.HasPrefix(s.Issuer, "http://127.0.0.1") &&
		!strings.HasPrefix(s.Issuer, "http://localhost") {
		return errors.New("the issuer must be an https:// URL")
	}
	if s.ClientID == "" {
		return errors.New("single sign-on needs a client ID")
	}
	if s.UsernameClaim == "" {
		return errors.New("single sign-on needs a username claim")
	}
	if !s.Use.Valid() {
		return errors.New("use must be users, admins or both")
	}
	return nil
}

// Check reports what is wrong with enabled settings, as a sentence.
func (s CertSettings) Check() error {
	if !s.Enabled {
		if s.Required {
			return errors.New("certificate login cannot be required while it is off")
		}
		return nil
	}
	if _, err := pki.CertPool([]byte(s.CACert)); err != nil {
		return fmt.Errorf("the certificate login CA: %w", err)
	}
	switch s.Identity {
	case "cn", "upn", "auto":
	default:
		return errors.New(`identity must be "cn", "upn" or "auto"`)
	}
	if s.CRL != "" {
		if _, err := parseCRL([]byte(s.CRL)); err != nil {
			return fmt.Errorf("the revocation list: %w", err)
		}
	}
	return nil
}

// Settings keeps the three sign-in configurations: those the command line
// sets are fixed; the others live in the store, their secrets (the LDAP
// service password, the OpenID Connect client secret) sealed by fields.
type Settings struct {
	store  store.Store
	fields *secrets.Fields

	mu    sync.Mutex
	fixed map[string]any // key -> settings set by flags
}

// Names of the sealed secrets (the additional data of their sealing).
const (
	fieldLDAPPassword = keyLDAP + ".bindPassword"
	fieldOIDCSecret   = keyOIDC + ".clientSecret"
)

// NewSettings returns Settings on st, whose secrets fields seals (nil
// keeps them in the clear). Non-nil arguments are settings given on the
// command line: they win over the stored ones and cannot be changed
// through the API. Secrets stored in the clear before are sealed now.
func NewSettings(st store.Store, fields *secrets.Fields, ldap *LDAPSettings, oidc *OIDCSettings, cert *CertSettings) (*Settings, error) {
	s := &Settings{store: st, fields: fields, fixed: map[string]any{}}
	if ldap != nil {
		if err := ldap.Check(); err != nil {
			return nil, fmt.Errorf("directory flags: %w", err)
		}
		s.fixed[keyLDAP] = *ldap
	}
	if oidc != nil {
		if err := oidc.Check(); err != nil {
			return nil, fmt.Errorf("single sign-on flags: %w", err)
		}
		s.fixed[keyOIDC] = *oidc
	}
	if cert != nil {
		if err := cert.Check(); err != nil {
			return nil, fmt.Errorf("certificate login flags: %w", err)
		}
		s.fixed[keyCert] = *cert
	}
	if err := s.sealStored(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// sealStored seals the stored secrets that are still in the clear
// (written before they were sealed).
func (s *Settings) sealStored(ctx context.Context) error {
	if s.fields == nil {
		return nil
	}
	for _, k := range []struct{ key, field string }{{keyLDAP, "bindPassword"}, {keyOIDC, "clientSecret"}} {
		if s.isFixed(k.key) {
			continue
		}
		v, err := s.store.Setting(ctx, k.key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			return fmt.Errorf("stored %s settings: %w", k.key, err)
		}
		clear, _ := m[k.field].(string)
		if clear == "" || secrets.FieldSealed(clear) {
			continue
		}
		m[k.field] = s.fields.Seal(k.key+"."+k.field, clear)
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := s.store.SetSetting(ctx, k.key, string(b), time.Now().UTC()); err != nil {
			return err
		}
	}
	return nil
}

// seal and open seal and open the secret named field, with no Fields
// (clear mode) leaving it as it is.
func (s *Settings) seal(field, v string) string {
	if s.fields == nil {
		return v
	}
	return s.fields.Seal(field, v)
}

func (s *Settings) open(field, v string) (string, error) {
	if s.fields == nil {
		return v, nil
	}
	return s.fields.Open(field, v)
}

// ErrFixed refuses to change settings the command line sets.
var ErrFixed = errors.New("these settings are set on the command line (flags or environment) and cannot be changed here")

func load[T any](ctx context.Context, s *Settings, key string, def T) (T, bool, error) {
	s.mu.Lock()
	f, ok := s.fixed[key]
	s.mu.Unlock()
	if ok {
		return f.(T), true, nil
	}
	v, err := s.store.Setting(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return def, false, nil
	}
	if err != nil {
		return def, false, err
	}
	out := def
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return def, false, fmt.Errorf("stored %s settings: %w", key, err)
	}
	return out, false, nil
}

func (s *Settings) isFixed(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.fixed[key]
	return ok
}

func save(ctx context.Context, s *Settings, key string, v any, now time.Time) error {
	s.mu.Lock()
	_, fixed := s.fixed[key]
	s.mu.Unlock()
	if fixed {
		return ErrFixed
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.store.SetSetting(ctx, key, string(b), now)
}

// LDAP returns the directory settings and whether the command line fixes
// them.
func (s *Settings) LDAP(ctx context.Context) (LDAPSettings, bool, error) {
	v, fixed, err := load(ctx, s, keyLDAP, DefaultLDAP())
	if err == nil && !fixed {
		v.BindPassword, err = s.open(fieldLDAPPassword, v.BindPassword)
	}
	return v, fixed, err
}

// OIDC returns the single sign-on settings and whether the command line
// fixes them.
func (s *Settings) OIDC(ctx context.Context) (OIDCSettings, bool, error) {
	v, fixed, err := load(ctx, s, keyOIDC, DefaultOIDC())
	if err == nil && !fixed {
		v.ClientSecret, err = s.open(fieldOIDCSecret, v.ClientSecret)
	}
	return v, fixed, err
}

// Cert returns the certificate login settings and whether the command
// line fixes them.
func (s *Settings) Cert(ctx context.Context) (CertSettings, bool, error) {
	return load(ctx, s, keyCert, DefaultCert())
}

// SetLDAP checks and stores directory settings. An empty BindPassword
// keeps the stored one.
func (s *Settings) SetLDAP(ctx context.Context, v LDAPSettings, now time.Time) error {
	if s.isFixed(keyLDAP) {
		return ErrFixed
	}
	if v.BindPassword == "" {
		old, _, err := s.LDAP(ctx)
		if err != nil {
			return err
		}
		v.BindPassword = old.BindPassword
	}
	if err := v.Check(); err != nil {
		return &InputError{err.Error()}
	}
	v.BindPassword = s.seal(fieldLDAPPassword, v.BindPassword)
	return save(ctx, s, keyLDAP, v, now)
}

// SetOIDC checks and stores single sign-on settings. An empty
// ClientSecret keeps the stored one.
func (s *Settings) SetOIDC(ctx context.Context, v OIDCSettings, now time.Time) error {
	if s.isFixed(keyOIDC) {
		return ErrFixed
	}
	if v.ClientSecret == "" {
		old, _, err := s.OIDC(ctx)
		if err != nil {
			return err
		}
		v.ClientSecret = old.ClientSecret
	}
	if err := v.Check(); err != nil {
		return &InputError{err.Error()}
	}
	v.ClientSecret = s.seal(fieldOIDCSecret, v.ClientSecret)
	return save(ctx, s, keyOIDC, v, now)
}

// SetCert checks and stores certificate login settings.
func (s *Settings) SetCert(ctx context.Context, v CertSettings, now time.Time) error {
	if s.isFixed(keyCert) {
		return ErrFixed
	}
	if err := v.Check(); err != nil {
		return &InputError{err.Error()}
	}
	return save(ctx, s, keyCert, v, now)
}

// InputError is a setting refused for what the administrator typed.
type InputError struct{ Msg string }

// Error returns the message.
func (e *InputError) Error() string { return e.Msg }

// rolesFor returns the management roles that groups map to.
func rolesFor(mapping []GroupRoles, groups []string, equal func(a, b string) bool) []string {
	var out []string
	for _, m := range mapping {
		for _, g := range groups {
			if equal(m.Group, g) {
				out = append(out, m.Roles...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
