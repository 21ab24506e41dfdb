package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"conclave/internal/config"
	"conclave/internal/perm"
	"conclave/internal/server"
	"conclave/internal/testutil/slapd"
	"conclave/internal/testutil/testca"
	"conclave/internal/testutil/testserver"
)

const (
	adminsGroup = "cn=conclave-admins,ou=groups," + slapd.Suffix
	readerDN    = "cn=reader," + slapd.Suffix
)

// directory starts slapd with alice (in conclave-admins), bob (in no
// group) and a read-only service account.
func directory(t *testing.T, noTLS bool) *slapd.Server {
	ldif := slapd.OUs() +
		fmt.Sprintf("dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: reader-Pw-1\n\n", readerDN) +
		slapd.User("alice", "Alice Liddell", "Alice-Dir-Pw-1") +
		slapd.User("bob", "Bob Builder", "Bob-Dir-Pw-1") +
		slapd.Group("conclave-admins", "alice") +
		slapd.Group("staff", "bob")
	return slapd.Start(t, slapd.Options{NoTLS: noTLS, LDIF: ldif})
}

// ldapServer starts Conclave signing in against dir with the flags an
// operator would give.
func ldapServer(t *testing.T, dir *slapd.Server) *testserver.Server {
	return ldapServerWith(t, dir, nil)
}

// ldapServerWith is ldapServer with the configuration adjusted by change.
func ldapServerWith(t *testing.T, dir *slapd.Server, change func(*config.Config)) *testserver.Server {
	tmp := t.TempDir()
	pw := testca.WriteFile(t, tmp, "bind-pw", "reader-Pw-1\n")
	var caFile string
	if dir.CA != nil {
		caFile = testca.WriteFile(t, tmp, "ldap-ca.pem", dir.CA.PEM())
	}
	return openServerWith(t, func(c *config.Config) {
		c.Auth.LDAPURL = dir.URL
		c.Auth.LDAPCA = caFile
		c.Auth.LDAPBindDN = readerDN
		c.Auth.LDAPBindPasswordFile = pw
		c.Auth.LDAPUserBase = "ou=people," + slapd.Suffix
		c.Auth.LDAPGroupBase = "ou=groups," + slapd.Suffix
		c.Auth.LDAPGroupRoles = []string{adminsGroup + "=" + perm.SecurityAdmin}
		if change != nil {
			change(c)
		}
	})
}

// TestLDAPUseAndConflicts: a directory used for meeting users only gives
// no management role, even to a member of a mapped group; one used for
// administrators only signs in nobody without a mapped group; and a
// directory entry cannot take over a local account of the same name
// (refused and audited).
func TestLDAPUseAndConflicts(t *testing.T) {
	dir := directory(t, false)
	users := ldapServerWith(t, dir, func(c *config.Config) { c.Auth.LDAPUse = "users" })
	st, body, _ := loginStatus(t, users, "alice", "Alice-Dir-Pw-1")
	if st != http.StatusOK || len(rolesOf(body)) != 0 {
		t.Fatalf("alice through a directory for meeting users: %d, roles %v; want a meeting user", st, rolesOf(body))
	}

	admins := ldapServerWith(t, dir, func(c *config.Config) { c.Auth.LDAPUse = "admins" })
	if st, body, _ := loginStatus(t, admins, "alice", "Alice-Dir-Pw-1"); st != http.StatusOK || !slices.Equal(rolesOf(body), []string{perm.SecurityAdmin}) {
		t.Fatalf("alice through a directory for administrators: %d %v", st, body)
	}
	if st, _, _ := loginStatus(t, admins, "bob", "Bob-Dir-Pw-1"); st != http.StatusUnauthorized {
		t.Fatalf("bob, in no mapped group, through a directory for administrators: %d", st)
	}

	both := ldapServer(t, dir)
	addAccount(t, both, "alice", perm.Administrator) // a local administrator named alice
	if st, _, _ := loginStatus(t, both, "alice", "Alice-Dir-Pw-1"); st != http.StatusUnauthorized {
		t.Fatalf("the directory's alice over a local account of that name: %d", st)
	}
	if !auditHas(t, both, "external-account-conflict", "") {
		t.Error("the refused takeover is not in the audit log")
	}
	if u, err := both.Store().UserByName(context.Background(), "alice"); err != nil || u.Source != "local" || !slices.Contains(u.Roles, perm.Administrator) {
		t.Fatalf("the local alice after the attempt: %+v %v", u, err)
	}
}

func loginStatus(t *testing.T, srv *testserver.Server, username, password string) (int, map[string]any, *apiClient) {
	c := newAPIClient(t, srv)
	st, body, _ := c.do("POST", "/api/login", map[string]string{"username": username, "password": password}, false)
	c.csrf, _ = body["csrf"].(string)
	return st, body, c
}

func rolesOf(body map[string]any) []string {
	var out []string
	list, _ := body["roles"].([]any)
	for _, r := range list {
		out = append(out, r.(string))
	}
	return out
}

func auditHas(t *testing.T, srv *testserver.Server, action, detail string) bool {
	recs, err := srv.AuditEvents(context.Background(), action)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.Contains(fmt.Sprint(r.Details), detail) {
			return true
		}
	}
	return false
}

// TestLDAPLogin: against Debian's slapd over StartTLS, a directory user
// signs in and gets the role of its group; a wrong password is refused; a
// user removed from the group loses the role at the next sign-in; a local
// account still signs in; with the directory down, sign-in falls back to
// local accounts and each fallback is audited.
func TestLDAPLogin(t *testing.T) {
	dir := directory(t, false)
	srv := ldapServer(t, dir)
	addAccount(t, srv, "root", perm.Administrator)

	st, body, alice := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1")
	if st != http.StatusOK {
		t.Fatalf("alice signs in: %d %v", st, body)
	}
	if r := rolesOf(body); !slices.Equal(r, []string{perm.SecurityAdmin}) || body["source"] != "ldap" {
		t.Fatalf("alice's roles %v, source %v; want [security-admin] from ldap", r, body["source"])
	}
	if u, _ := body["user"].(map[string]any); u["displayName"] != "Alice Liddell" {
		t.Errorf("display name from the directory: %v", u)
	}
	if st, body, _ := alice.do("GET", "/api/users", nil, false); st != http.StatusOK {
		t.Fatalf("alice, a security administrator, lists accounts: %d %v", st, body)
	}
	if st, body, _ := alice.do("GET", "/api/rooms", nil, false); st != http.StatusForbidden {
		t.Fatalf("alice has no room permission: %d %v", st, body)
	}
	if st, body, _ := alice.do("POST", "/api/password", map[string]string{"oldPassword": "Alice-Dir-Pw-1",
		"newPassword": "Another-Pw-123"}, true); st != http.StatusConflict || errCode(body) != "external-account" {
		t.Fatalf("a directory user's password is changed in the directory: %d %v", st, body)
	}

	st, body, bob := loginStatus(t, srv, "bob", "Bob-Dir-Pw-1")
	if st != http.StatusOK || len(rolesOf(body)) != 0 {
		t.Fatalf("bob, in no mapped group, signs in as a meeting user: %d %v", st, body)
	}
	if st, _, _ := bob.do("GET", "/api/users", nil, false); st != http.StatusForbidden {
		t.Fatalf("bob lists accounts: %d", st)
	}

	if st, body, _ := loginStatus(t, srv, "alice", "wrong-Password-9"); st != http.StatusUnauthorized || errCode(body) != "bad-credentials" {
		t.Fatalf("wrong directory password: %d %v", st, body)
	}
	if !auditHas(t, srv, "login-failed", "directory refused the password") {
		t.Error("the refused directory password is not in the audit log")
	}
	if st, _, _ := loginStatus(t, srv, "alice", ""); st != http.StatusUnauthorized {
		t.Fatalf("empty password (an unauthenticated bind): %d", st)
	}

	// alice leaves the group in the directory.
	mod := ldap.NewModifyRequest(adminsGroup, nil)
	mod.Replace("member", []string{"uid=bob,ou=people," + slapd.Suffix})
	if err := dir.Admin(t).Modify(mod); err != nil {
		t.Fatal(err)
	}
	st, body, alice = loginStatus(t, srv, "alice", "Alice-Dir-Pw-1")
	if st != http.StatusOK || len(rolesOf(body)) != 0 {
		t.Fatalf("alice after leaving the group: %d roles %v", st, rolesOf(body))
	}
	if st, _, _ := alice.do("GET", "/api/users", nil, false); st != http.StatusForbidden {
		t.Fatalf("alice lists accounts after leaving the group: %d", st)
	}
	if !auditHas(t, srv, "role-changed", "security-admin") {
		t.Error("the lost role is not in the audit log")
	}

	// A local account signs in while the directory is up (it does not
	// know the name) and while it is down.
	if st, body, _ := loginStatus(t, srv, "root", testPassword); st != http.StatusOK {
		t.Fatalf("local account, directory up: %d %v", st, body)
	}
	if auditHas(t, srv, "ldap-fallback", "") {
		t.Fatal("a fallback was recorded while the directory was up")
	}
	dir.Stop()
	if st, body, _ := loginStatus(t, srv, "root", testPassword); st != http.StatusOK {
		t.Fatalf("local account, directory down: %d %v", st, body)
	}
	if st, _, _ := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1"); st != http.StatusUnauthorized {
		t.Fatalf("a directory user while the directory is down: %d", st)
	}
	if !auditHas(t, srv, "ldap-fallback", "the directory is unavailable") {
		t.Error("the fallback to local accounts is not in the audit log")
	}
}

// TestLDAPRefusesClearText: a directory that offers no StartTLS is never
// sent a password; sign-in falls back to local accounts, the audit log
// and the settings test say why in a sentence.
func TestLDAPRefusesClearText(t *testing.T) {
	dir := directory(t, true)
	srv := ldapServer(t, dir)
	addAccount(t, srv, "root", perm.Administrator)
	if st, _, _ := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1"); st != http.StatusUnauthorized {
		t.Fatalf("alice against a clear-text directory: %d", st)
	}
	if !auditHas(t, srv, "ldap-fallback", "does not offer StartTLS") {
		t.Error("the audit log does not say that the directory offers no StartTLS")
	}
	st, _, root := loginStatus(t, srv, "root", testPassword)
	if st != http.StatusOK {
		t.Fatalf("root: %d", st)
	}
	st, body, _ := root.do("POST", "/api/settings/ldap/test", nil, true)
	msg, _ := body["error"].(string)
	if st != http.StatusOK || body["ok"] != false || !strings.Contains(msg, "does not offer StartTLS") {
		t.Fatalf("settings test: %d %v", st, body)
	}
	st, body, _ = root.do("PUT", "/api/settings/ldap", map[string]any{"enabled": true, "url": "ldap://x"}, true)
	if st != http.StatusConflict || errCode(body) != "settings-fixed" {
		t.Fatalf("changing flag-set settings: %d %v", st, body)
	}
}

// TestLDAPPasswordPolicy: the directory's own password policy applies to
// directory users: after the failures its policy allows (2 here, fewer
// than Conclave's own delay threshold), the directory locks the entry and
// even the right password is refused.
func TestLDAPPasswordPolicy(t *testing.T) {
	ldif := slapd.OUs() +
		fmt.Sprintf("dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: reader-Pw-1\n\n", readerDN) +
		slapd.User("alice", "Alice Liddell", "Alice-Dir-Pw-1") + slapd.Group("conclave-admins", "alice")
	dir := slapd.Start(t, slapd.Options{LDIF: ldif, LockAfter: 2})
	srv := ldapServer(t, dir)
	if st, body, _ := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1"); st != http.StatusOK {
		t.Fatalf("alice before any failure: %d %v", st, body)
	}
	for range 2 {
		if st, _, _ := loginStatus(t, srv, "alice", "wrong-Password-9"); st != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", st)
		}
	}
	if st, body, _ := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1"); st != http.StatusUnauthorized {
		t.Fatalf("alice after the directory locked her entry: %d %v", st, body)
	}
}

// TestSignInSecretsSealed: the LDAP service password and the OpenID
// Connect client secret set on the admin page are not in the database in
// the clear (it may be a PostgreSQL server others run and back up); the
// directory sign-in still works with them, and a backup restored onto a
// new node with another master key keeps them.
func TestSignInSecretsSealed(t *testing.T) {
	dir := directory(t, false)
	srv := openServerWith(t, func(c *config.Config) { c.Secrets.Key = strings.Repeat("ab", 32) })
	addAccount(t, srv, "root", perm.Administrator)
	_, _, root := loginStatus(t, srv, "root", testPassword)
	ldapSettings := map[string]any{"enabled": true, "url": dir.URL, "caCert": string(dir.CA.PEM()), "bindDn": readerDN,
		"bindPassword": "reader-Pw-1", "userBase": "ou=people," + slapd.Suffix, "userFilter": "(&(objectClass=person)(uid={username}))",
		"usernameAttribute": "uid", "displayNameAttribute": "cn", "groupBase": "ou=groups," + slapd.Suffix,
		"groupFilter": "(&(objectClass=groupOfNames)(member={dn}))",
		"groups":      []map[string]any{{"group": adminsGroup, "roles": []string{perm.SecurityAdmin}}}, "use": "both"}
	if st, body, _ := root.do("PUT", "/api/settings/ldap", ldapSettings, true); st != http.StatusOK {
		t.Fatalf("LDAP settings: %d %v", st, body)
	}
	const clientSecret = "the-oidc-client-secret-42"
	if st, body, _ := root.do("PUT", "/api/settings/oidc", map[string]any{"enabled": true, "issuer": "https://sso.example.org",
		"clientId": "conclave", "clientSecret": clientSecret, "usernameClaim": "preferred_username", "use": "users"}, true); st != http.StatusOK {
		t.Fatalf("OIDC settings: %d %v", st, body)
	}
	ctx := context.Background()
	for key, secret := range map[string]string{"authn.ldap": "reader-Pw-1", "authn.oidc": clientSecret} {
		raw, err := srv.Store().Setting(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(raw, secret) {
			t.Errorf("the database holds the %s secret in the clear: %s", key, raw)
		}
	}
	if st, body, _ := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1"); st != http.StatusOK {
		t.Fatalf("alice signs in through the directory: %d %v", st, body)
	}
	// Leaving the password out keeps the stored one.
	delete(ldapSettings, "bindPassword")
	ldapSettings["timeoutSeconds"] = 7
	if st, body, _ := root.do("PUT", "/api/settings/ldap", ldapSettings, true); st != http.StatusOK {
		t.Fatalf("LDAP settings without the password: %d %v", st, body)
	}
	if st, body, _ := loginStatus(t, srv, "alice", "Alice-Dir-Pw-1"); st != http.StatusOK {
		t.Fatalf("alice after a change that kept the password: %d %v", st, body)
	}

	// Backed up, restored onto a node with another master key.
	_, b, _ := root.do("POST", "/api/backups", map[string]any{"passphrase": "a backup passphrase"}, true)
	name, _ := b["name"].(string)
	path, err := srv.Backups().Path(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := config.Defaults()
	cfg.DataDir = filepath.Join(t.TempDir(), "restored")
	cfg.Secrets.Key = strings.Repeat("cd", 32)
	if _, err := server.RestoreDataDir(f, "a backup passphrase", cfg); err != nil {
		t.Fatal(err)
	}
	restored := openServerWith(t, func(c *config.Config) { c.DataDir, c.Secrets.Key = cfg.DataDir, cfg.Secrets.Key })
	if st, body, _ := loginStatus(t, restored, "alice", "Alice-Dir-Pw-1"); st != http.StatusOK {
		t.Fatalf("alice on the restored node: %d %v", st, body)
	}
	_, _, root2 := loginStatus(t, restored, "root", testPassword)
	if st, body, _ := root2.do("GET", "/api/settings/oidc", nil, false); st != http.StatusOK || body["hasSecret"] != true {
		t.Fatalf("the restored node's single sign-on settings: %d %v", st, body)
	}
}
