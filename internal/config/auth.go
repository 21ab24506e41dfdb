package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// AuthConfig holds the management-plane and sign-in flags. Each group
// (directory, single sign-on, certificate login) is "set on the command
// line" when its first flag (LDAPURL, OIDCIssuer, CertCA) is given; the
// admin page then shows it read-only. Otherwise the admin page and API
// edit it.
type AuthConfig struct {
	// AdminListen puts /admin and the management API on their own HTTPS
	// address; the meeting listener then answers them like unknown paths.
	AdminListen string
	// AdminClientCA, when set, makes the management listener require a
	// client certificate issued by this CA (PEM file) for every
	// connection (mutual TLS).
	AdminClientCA string

	LDAPURL, LDAPCA, LDAPBindDN, LDAPBindPasswordFile string
	LDAPUserBase, LDAPUserFilter, LDAPGroupBase       string
	LDAPGroupFilter, LDAPUse                          string
	// LDAPGroupRoles are "GROUP-DN=role[+role...]".
	LDAPGroupRoles []string

	OIDCIssuer, OIDCClientID, OIDCClientSecretFile string
	OIDCScopes, OIDCUsernameClaim, OIDCRolesClaim  string
	OIDCUse                                        string
	// OIDCGroupRoles are "VALUE=role[+role...]".
	OIDCGroupRoles []string

	CertCA, CertIdentity, CertCRL, CertCRLURL, CertOCSPURL string
	CertRequired, CertOCSP                                 bool
}

func registerAuth(fs *flag.FlagSet, c *AuthConfig) {
	str := func(p *string, name, envName, usage string) {
		fs.StringVar(p, name, env(envName, *p), usage+" (env "+envName+")")
	}
	list := func(p *[]string, name, envName, usage string) {
		if v := os.Getenv(envName); v != "" {
			*p = splitSemi(v)
		}
		fs.Func(name, usage+"; repeatable (env "+envName+", ';'-separated)", func(v string) error {
			*p = append(*p, v)
			return nil
		})
	}
	boolean := func(p *bool, name, envName, usage string) {
		fs.BoolVar(p, name, env(envName, "") == "true" || env(envName, "") == "1", usage+" (env "+envName+")")
	}
	str(&c.AdminListen, "admin-listen", "CONCLAVE_ADMIN_LISTEN", "separate HTTPS address for /admin and the management API, e.g. 127.0.0.1:9443")
	str(&c.AdminClientCA, "admin-client-ca", "CONCLAVE_ADMIN_CLIENT_CA", "PEM file of the CA whose client certificate every connection to --admin-listen must present (mutual TLS)")

	str(&c.LDAPURL, "ldap-url", "CONCLAVE_LDAP_URL", "directory URL, ldap://host:389 (StartTLS) or ldaps://host:636; sets the directory on the command line")
	str(&c.LDAPCA, "ldap-ca", "CONCLAVE_LDAP_CA", "PEM file of the CA to trust for the directory (default: the system's)")
	str(&c.LDAPBindDN, "ldap-bind-dn", "CONCLAVE_LDAP_BIND_DN", "DN of the read-only service account")
	str(&c.LDAPBindPasswordFile, "ldap-bind-password-file", "CONCLAVE_LDAP_BIND_PASSWORD_FILE", "file holding the service account's password")
	str(&c.LDAPUserBase, "ldap-user-base", "CONCLAVE_LDAP_USER_BASE", "search base of users")
	str(&c.LDAPUserFilter, "ldap-user-filter", "CONCLAVE_LDAP_USER_FILTER", "user filter, {username} is replaced (default (&(objectClass=person)(uid={username})))")
	str(&c.LDAPGroupBase, "ldap-group-base", "CONCLAVE_LDAP_GROUP_BASE", "search base of groups (empty: no group lookup)")
	str(&c.LDAPGroupFilter, "ldap-group-filter", "CONCLAVE_LDAP_GROUP_FILTER", "group filter, {dn} is replaced (default (|(member={dn})(uniqueMember={dn})))")
	str(&c.LDAPUse, "ldap-use", "CONCLAVE_LDAP_USE", "whom the directory signs in: users, admins or both (default both)")
	list(&c.LDAPGroupRoles, "ldap-group-role", "CONCLAVE_LDAP_GROUP_ROLES", "GROUP-DN=role[+role] maps a directory group to management roles")

	str(&c.OIDCIssuer, "oidc-issuer", "CONCLAVE_OIDC_ISSUER", "OpenID provider issuer URL; sets single sign-on on the command line")
	str(&c.OIDCClientID, "oidc-client-id", "CONCLAVE_OIDC_CLIENT_ID", "client ID registered at the provider")
	str(&c.OIDCClientSecretFile, "oidc-client-secret-file", "CONCLAVE_OIDC_CLIENT_SECRET_FILE", "file holding the client secret (none for a public client)")
	str(&c.OIDCScopes, "oidc-scopes", "CONCLAVE_OIDC_SCOPES", "scopes besides openid, comma-separated (default profile,email)")
	str(&c.OIDCUsernameClaim, "oidc-username-claim", "CONCLAVE_OIDC_USERNAME_CLAIM", "claim holding the username (default preferred_username)")
	str(&c.OIDCRolesClaim, "oidc-roles-claim", "CONCLAVE_OIDC_ROLES_CLAIM", "claim holding groups or roles (default groups)")
	str(&c.OIDCUse, "oidc-use", "CONCLAVE_OIDC_USE", "whom single sign-on signs in: users, admins or both (default users)")
	list(&c.OIDCGroupRoles, "oidc-group-role", "CONCLAVE_OIDC_GROUP_ROLES", "VALUE=role[+role] maps a value of the roles claim to management roles")

	str(&c.CertCA, "admin-cert-ca", "CONCLAVE_ADMIN_CERT_CA", "PEM file of the CA issuing administrators' client certificates; enables certificate login")
	str(&c.CertIdentity, "admin-cert-identity", "CONCLAVE_ADMIN_CERT_IDENTITY", "where the username is read: cn, upn or auto (default auto)")
	boolean(&c.CertRequired, "admin-cert-required", "CONCLAVE_ADMIN_CERT_REQUIRED", "administrators must sign in with a certificate")
	str(&c.CertCRL, "admin-cert-crl", "CONCLAVE_ADMIN_CERT_CRL", "file holding the issuer's CRL (PEM or DER), read at start")
	str(&c.CertCRLURL, "admin-cert-crl-url", "CONCLAVE_ADMIN_CERT_CRL_URL", "URL of the issuer's CRL, fetched and cached")
	boolean(&c.CertOCSP, "admin-cert-ocsp", "CONCLAVE_ADMIN_CERT_OCSP", "check certificates with the OCSP responder they name")
	str(&c.CertOCSPURL, "admin-cert-ocsp-url", "CONCLAVE_ADMIN_CERT_OCSP_URL", "OCSP responder to ask instead of the certificate's")
}

func splitSemi(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ParseGroupRoles reads "GROUP=role[+role]" mappings.
func ParseGroupRoles(list []string) (map[string][]string, []string, error) {
	out := map[string][]string{}
	var order []string
	for _, m := range list {
		i := strings.LastIndexByte(m, '=')
		if i <= 0 || i == len(m)-1 {
			return nil, nil, fmt.Errorf("%q is not GROUP=role[+role]", m)
		}
		g := m[:i]
		if _, ok := out[g]; !ok {
			order = append(order, g)
		}
		out[g] = append(out[g], strings.Split(m[i+1:], "+")...)
	}
	return out, order, nil
}

// validateAuth checks the management-plane flags.
func (c *AuthConfig) validate(listen string) error {
	if c.AdminListen != "" && c.AdminListen == listen && !strings.HasSuffix(listen, ":0") {
		return fmt.Errorf("--admin-listen must differ from --listen")
	}
	if c.AdminClientCA != "" && c.AdminListen == "" {
		return fmt.Errorf("--admin-client-ca needs --admin-listen")
	}
	if _, _, err := ParseGroupRoles(c.LDAPGroupRoles); err != nil {
		return fmt.Errorf("--ldap-group-role: %w", err)
	}
	if _, _, err := ParseGroupRoles(c.OIDCGroupRoles); err != nil {
		return fmt.Errorf("--oidc-group-role: %w", err)
	}
	return nil
}
