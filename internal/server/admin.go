package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"conclave/internal/audit"
	"conclave/internal/authn"
	"conclave/internal/clock"
	"conclave/internal/config"
	"conclave/internal/devca"
	"conclave/internal/pki"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// authSettings turns the sign-in flags into authn settings: each group set
// on the command line is fixed; the others are edited on the admin page,
// their secrets sealed by fields in the store.
func authSettings(st store.Store, fields *secrets.Fields, c config.AuthConfig) (*authn.Settings, error) {
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
		l.Groups = groupRoles(c.LDAPGroupRoles)
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
		o.Groups = groupRoles(c.OIDCGroupRoles)
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
	return authn.NewSettings(st, fields, ldap, oidc, cert)
}

// groupRoles turns the group=role,role flags (checked by config) into
// mappings, in the order given.
func groupRoles(flags []string) []authn.GroupRoles {
	m, order, _ := config.ParseGroupRoles(flags)
	out := make([]authn.GroupRoles, 0, len(order))
	for _, g := range order {
		out = append(out, authn.GroupRoles{Group: g, Roles: m[g]})
	}
	return out
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
		if pool, err := pki.CertPool([]byte(cs.CACert)); err == nil {
			c.ClientCAs = pool
		}
		return c, nil
	}
	return cfg
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

// AccountSweep is how often the server closes the meeting connections of
// accounts disabled or deleted by another process (`conclave admin` on the
// shell). Changes made through the API close them at once.
const AccountSweep = 5 * time.Second

// sweepAccounts closes, every interval until ctx ends, the meeting
// connections of accounts that are no longer enabled.
func (s *Server) sweepAccounts(ctx context.Context, interval time.Duration) {
	stop := clock.Every(s.clock, interval, func() {
		if s.sipCA != nil {
			// Telephony devices revoked from the shell: drop their
			// registrations and the cached revocation list.
			if err := s.sipCA.Sync(ctx); err != nil {
				s.log.Warn("device revocations", "err", err)
			}
		}
		for _, id := range s.meetings.AccountIDs() {
			u, err := s.store.UserByID(ctx, id)
			if errors.Is(err, store.ErrNotFound) || err == nil && !u.Enabled {
				if n := s.meetings.DisconnectUser(id, "account-disabled"); n > 0 {
					s.log.Info("meeting connections of a disabled account ended", "user", id, "connections", n)
				}
			}
		}
	})
	<-ctx.Done()
	stop()
}

// deactivated ends what a disabled or deleted account still holds: its
// meeting connections, and its telephony device certificates, which are
// revoked (reason: privilege withdrawn) so that its phones stop
// registering. It runs after the account's sessions have ended.
func (s *Server) deactivated(ctx context.Context, u store.User, reason string) error {
	if n := s.meetings.DisconnectUser(u.ID, "account-disabled"); n > 0 {
		s.log.Info("meeting connections of a deactivated account ended", "username", u.Username, "reason", reason, "connections", n)
	}
	if s.sipCA == nil {
		// Telephony is off now, but devices enrolled while it was on
		// are revoked all the same.
		_, err := devca.RevokeUserInStore(ctx, s.store, s.audit, s.clock.Now(), u, audit.ActorFrom(ctx), audit.SourceFrom(ctx))
		return err
	}
	_, err := s.sipCA.RevokeUser(ctx, u, audit.ActorFrom(ctx), audit.SourceFrom(ctx))
	return err
}
