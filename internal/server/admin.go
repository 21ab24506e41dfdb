package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"

	"conclave/internal/authn"
	"conclave/internal/config"
	"conclave/internal/store"
)

// authSettings turns the sign-in flags into authn settings: each group set
// on the command line is fixed; the others are edited on the admin page.
func authSettings(st store.Store, c config.AuthConfig) (*authn.Settings, error) {
	readFile := func(flag, path string) (string, error) {
		if path == "" {
			return "", nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		return string(b), nil
	}
	var (
		ldap *authn.LDAPSettings
		oidc *authn.OIDCSettings
		cert *authn.CertSettings
		err  error
	)
	if c.LDAPURL != "" {
		l := authn.DefaultLDAP()
		l.Enabled, l.URL, l.BindDN, l.UserBase, l.GroupBase = true, c.LDAPURL, c.LDAPBindDN, c.LDAPUserBase, c.LDAPGroupBase
		if c.LDAPUserFilter != "" {
			l.UserFilter = c.LDAPUserFilter
		}
		if c.LDAPGroupFilter != "" {
			l.GroupFilter = c.LDAPGroupFilter
		}
		if c.LDAPUse != "" {
			l.Use = authn.Use(c.LDAPUse)
		}
		if l.CACert, err = readFile("--ldap-ca", c.LDAPCA); err != nil {
			return nil, err
		}
		if l.BindPassword, err = readFile("--ldap-bind-password-file", c.LDAPBindPasswordFile); err != nil {
			return nil, err
		}
		l.BindPassword = strings.TrimRight(l.BindPassword, "\r\n")
		m, order, _ := config.ParseGroupRoles(c.LDAPGroupRoles)
		for _, g := range order {
			l.Groups = append(l.Groups, authn.GroupRoles{Group: g, Roles: m[g]})
		}
		ldap = &l
	}
	if c.OIDCIssuer != "" {
		o := authn.DefaultOIDC()
		o.Enabled, o.Issuer, o.ClientID = true, c.OIDCIssuer, c.OIDCClientID
		if c.OIDCScopes != "" {
			o.Scopes = strings.Split(c.OIDCScopes, ",")
		}
		if c.OIDCUsernameClaim != "" {
			o.UsernameClaim = c.OIDCUsernameClaim
		}
		if c.OIDCRolesClaim != "" {
			o.RolesClaim = c.OIDCRolesClaim
		}
		if c.OIDCUse != "" {
			o.Use = authn.Use(c.OIDCUse)
		}
		if o.ClientSecret, err = readFile("--oidc-client-secret-file", c.OIDCClientSecretFile); err != nil {
			return nil, err
		}
		o.ClientSecret = strings.TrimRight(o.ClientSecret, "\r\n")
		m, order, _ := config.ParseGroupRoles(c.OIDCGroupRoles)
		for _, g := range order {
			o.Groups = append(o.Groups, authn.GroupRoles{Group: g, Roles: m[g]})
		}
		oidc = &o
	}
	if c.CertCA != "" {
		ct := authn.DefaultCert()
		ct.Enabled, ct.Required, ct.OCSP, ct.OCSPURL, ct.CRLURL = true, c.CertRequired, c.CertOCSP, c.CertOCSPURL, c.CertCRLURL
		if c.CertIdentity != "" {
			ct.Identity = c.CertIdentity
		}
		if ct.CACert, err = readFile("--admin-cert-ca", c.CertCA); err != nil {
			return nil, err
		}
		if ct.CRL, err = readFile("--admin-cert-crl", c.CertCRL); err != nil {
			return nil, err
		}
		cert = &ct
	} else if c.CertRequired {
		return nil, fmt.Errorf("--admin-cert-required needs --admin-cert-ca")
	}
	return authn.NewSettings(st, ldap, oidc, cert)
}

// listenerTLS returns the TLS configuration of a listener: base, plus a
// request for a client certificate when certificate login is enabled
// (re-read at each handshake, so that a change on the admin page applies
// at once), or a required one verified against clientCA (mutual TLS on
// the management listener).
func listenerTLS(base *tls.Config, settings *authn.Settings, askCert bool, clientCA *x509.CertPool) *tls.Config {
	cfg := base.Clone()
	if clientCA != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = clientCA
		return cfg
	}
	if !askCert {
		return cfg
	}
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cs, _, err := settings.Cert(hello.Context())
		if err != nil || !cs.Enabled {
			return nil, nil
		}
		c := base.Clone()
		// The certificate is checked by the login endpoint, at the
		// node's clock and against its revocation sources, so that an
		// expired or revoked one gets a clear answer instead of a broken
		// handshake.
		c.ClientAuth = tls.RequestClientCert
		if pool, err := pemPool(cs.CACert); err == nil {
			c.ClientCAs = pool
		}
		return c, nil
	}
	return cfg
}

func pemPool(text string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(text)) {
		return nil, fmt.Errorf("no PEM certificate found")
	}
	return pool, nil
}

// AdminURL is the base URL of the management listener, or of the only
// listener when management has none of its own.
func (s *Server) AdminURL() string {
	if s.adminURL != "" {
		return s.adminURL
	}
	return s.url
}

// AdminAddr is the address of the management listener; nil without
// --admin-listen.
func (s *Server) AdminAddr() net.Addr {
	if s.adminListener == nil {
		return nil
	}
	return s.adminListener.Addr()
}
