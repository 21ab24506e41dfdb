package authn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"conclave/internal/pki"
)

// Identity is who a directory or single sign-on provider says signed in.
type Identity struct {
	// Source is store.SourceLDAP or store.SourceOIDC.
	Source string
	// ExternalID is stable in the source: the entry's DN, or "issuer
	// subject".
	ExternalID  string
	Username    string
	DisplayName string
	// Groups are the group DNs or claim values found; Roles the management
	// roles they map to (already filtered by the provider's Use).
	Groups []string
	Roles  []string
	// Use is the provider's use: a UseAdmins provider signs in nobody
	// without a role.
	Use Use
}

// Errors of the directory.
var (
	// ErrNotInDirectory: the directory has no entry for the username; the
	// local accounts are tried next.
	ErrNotInDirectory = errors.New("the directory has no such user")
	// ErrDirectoryRefused: the directory refused the password (wrong,
	// expired, or the account locked by the directory's policy).
	ErrDirectoryRefused = errors.New("the directory refused the password")
)

// UnavailableError reports a directory that could not be used: down,
// unreachable, refusing TLS or the service account. Sign-in falls back to
// local accounts, and the fallback is audited with this message.
type UnavailableError struct{ Err error }

// Error says what went wrong, for the operator.
func (e *UnavailableError) Error() string { return "the directory is unavailable: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// dialLDAP opens a TLS-protected connection: LDAPS, or StartTLS before
// anything else is sent. It never returns a clear-text connection.
func dialLDAP(s LDAPSettings) (*ldap.Conn, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, fmt.Errorf("the directory URL %q does not parse: %w", s.URL, err)
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if s.CACert != "" {
		if tc.RootCAs, err = pki.CertPool([]byte(s.CACert)); err != nil {
			return nil, fmt.Errorf("the directory CA: %w", err)
		}
	}
	dialer := &net.Dialer{Timeout: s.Timeout()}
	switch strings.ToLower(u.Scheme) {
	case "ldaps":
		c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(tc))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", s.URL, err)
		}
		c.SetTimeout(s.Timeout())
		return c, nil
	case "ldap":
		c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(dialer))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", s.URL, err)
		}
		c.SetTimeout(s.Timeout())
		if err := c.StartTLS(tc); err != nil {
			c.Close()
			var le *ldap.Error
			if errors.As(err, &le) && le.ResultCode != ldap.ErrorNetwork {
				return nil, fmt.Errorf("the directory at %s does not offer StartTLS (%s); Conclave never sends credentials in clear: enable TLS on the directory or use ldaps://", s.URL, ldap.LDAPResultCodeMap[le.ResultCode])
			}
			return nil, fmt.Errorf("StartTLS with %s failed: %w", s.URL, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("the directory URL %q must start with ldap:// or ldaps://", s.URL)
}

// TestLDAP connects and binds with the service account, for the admin
// page's "test the connection" button.
func TestLDAP(ctx context.Context, s LDAPSettings) error {
	c, err := dialLDAP(s)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := serviceBind(c, s); err != nil {
		return err
	}
	return nil
}

func serviceBind(c *ldap.Conn, s LDAPSettings) error {
	if s.BindDN == "" {
		return nil // anonymous search, over TLS
	}
	if err := c.Bind(s.BindDN, s.BindPassword); err != nil {
		return fmt.Errorf("the service account %s could not bind: %w", s.BindDN, err)
	}
	return nil
}

// LDAPLogin checks username and password against the directory: a service
// bind, a search for the user, a bind as the user, then a search for the
// user's groups, mapped to roles. Errors: ErrNotInDirectory,
// ErrDirectoryRefused, or an *UnavailableError.
func LDAPLogin(ctx context.Context, s LDAPSettings, username, password string) (Identity, error) {
	if password == "" {
		// An empty password is an unauthenticated bind, which many
		// directories accept: never take it as proof.
		return Identity{}, ErrDirectoryRefused
	}
	c, err := dialLDAP(s)
	if err != nil {
		return Identity{}, &UnavailableError{err}
	}
	defer c.Close()
	if err := serviceBind(c, s); err != nil {
		return Identity{}, &UnavailableError{err}
	}
	filter := strings.ReplaceAll(s.UserFilter, "{username}", ldap.EscapeFilter(username))
	res, err := c.Search(ldap.NewSearchRequest(s.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2,
		int(s.Timeout().Seconds()), false, filter, []string{s.UsernameAttribute, s.DisplayNameAttribute}, nil))
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return Identity{}, ErrNotInDirectory
		}
		return Identity{}, &UnavailableError{fmt.Errorf("user search: %w", err)}
	}
	switch len(res.Entries) {
	case 0:
		return Identity{}, ErrNotInDirectory
	case 1:
	default:
		return Identity{}, &UnavailableError{fmt.Errorf("the user filter matches several entries for %q; make it unique", username)}
	}
	e := res.Entries[0]
	if err := c.Bind(e.DN, password); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) || ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) ||
			ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			return Identity{}, ErrDirectoryRefused
		}
		return Identity{}, &UnavailableError{fmt.Errorf("user bind: %w", err)}
	}
	id := Identity{Source: "ldap", ExternalID: e.DN, Username: e.GetAttributeValue(s.UsernameAttribute),
		DisplayName: e.GetAttributeValue(s.DisplayNameAttribute), Use: s.Use}
	if id.Username == "" {
		id.Username = username
	}
	if s.GroupBase != "" {
		// Search the groups with the service account's rights, not the
		// user's.
		if err := serviceBind(c, s); err != nil {
			return Identity{}, &UnavailableError{err}
		}
		gf := strings.ReplaceAll(s.GroupFilter, "{dn}", ldap.EscapeFilter(e.DN))
		gr, err := c.Search(ldap.NewSearchRequest(s.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 1000,
			int(s.Timeout().Seconds()), false, gf, []string{"dn"}, nil))
		if err != nil {
			return Identity{}, &UnavailableError{fmt.Errorf("group search: %w", err)}
		}
		for _, g := range gr.Entries {
			id.Groups = append(id.Groups, g.DN)
		}
	}
	if s.Use != UseUsers {
		id.Roles = rolesFor(s.Groups, id.Groups, sameDN)
	}
	return id, nil
}

// sameDN compares two DNs as the directory would (case and spacing).
func sameDN(a, b string) bool {
	da, errA := ldap.ParseDN(a)
	db, errB := ldap.ParseDN(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return da.EqualFold(db)
}
