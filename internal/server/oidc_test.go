package server_test

import (
	"crypto/tls"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"

	"conclave/internal/perm"
	"conclave/internal/testutil/oidcop"
)

// TestOIDCLogin: single sign-on against a real OpenID provider configured
// from the management API: the authorization code flow with PKCE signs a
// user in, its groups claim maps to a management role, a user without a
// mapped group becomes a meeting user, and a provider that does not
// present the configured issuer is refused with a sentence.
func TestOIDCLogin(t *testing.T) {
	srv := openServerWith(t, nil)
	addAccount(t, srv, "root", perm.Administrator)
	callback := srv.URL() + "/api/oidc/callback"
	op := oidcop.Start(t, map[string][]string{oidcop.Subject1: {"conclave-room-admins", "staff"}},
		oidcop.Client{ID: "conclave", Secret: "conclave-secret", RedirectURIs: []string{callback}})

	_, _, root := loginStatus(t, srv, "root", testPassword)
	settings := map[string]any{"enabled": true, "issuer": op.Issuer, "clientId": "conclave", "clientSecret": "conclave-secret",
		"scopes": []string{"profile", "email"}, "usernameClaim": "preferred_username", "displayNameClaim": "name",
		"rolesClaim": "groups", "use": "both", "groups": []map[string]any{{"group": "conclave-room-admins", "roles": []string{perm.RoomAdmin}}}}
	st, body, _ := root.do("PUT", "/api/settings/oidc", settings, true)
	if _, shown := body["settings"].(map[string]any)["clientSecret"]; st != http.StatusOK || body["hasSecret"] != true || shown {
		t.Fatalf("store the settings: %d %v", st, body)
	}
	st, body, _ = root.do("GET", "/api/settings/oidc", nil, false)
	if s, _ := body["settings"].(map[string]any); st != http.StatusOK || s["clientSecret"] != nil || body["redirectUrl"] != callback {
		t.Fatalf("read the settings: %d %v", st, body)
	}
	st, body, _ = root.do("GET", "/api/login/methods", nil, false)
	if st != http.StatusOK || body["oidc"] != true {
		t.Fatalf("login methods: %d %v", st, body)
	}

	browser := func() *apiClient {
		jar, _ := cookiejar.New(nil)
		return &apiClient{t: t, base: srv.URL(), hc: &http.Client{Jar: jar,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	}
	signIn := func(username string) *apiClient {
		b := browser()
		back, err := oidcop.SignIn(b.hc, srv.URL()+"/api/oidc/login?return=/admin", username, oidcop.Password, srv.URL()+"/admin")
		if err != nil {
			t.Fatalf("single sign-on as %s: %v", username, err)
		}
		if back.Fragment != "" {
			t.Fatalf("single sign-on as %s came back with %q", username, back.Fragment)
		}
		return b
	}

	u1 := signIn(oidcop.User1)
	st, body, _ = u1.do("GET", "/api/me", nil, false)
	if st != http.StatusOK || body["source"] != "oidc" || !slices.Equal(rolesOf(body), []string{perm.RoomAdmin}) {
		t.Fatalf("the first user: %d %v", st, body)
	}
	if u, _ := body["user"].(map[string]any); u["username"] != oidcop.User1 || u["displayName"] != "Test User" {
		t.Errorf("claims to account: %v", u)
	}
	if st, _, _ := u1.do("GET", "/api/rooms", nil, false); st != http.StatusOK {
		t.Fatalf("a room administrator lists rooms: %d", st)
	}
	if st, _, _ := u1.do("GET", "/api/sessions", nil, false); st != http.StatusForbidden {
		t.Fatalf("a room administrator reads sessions: %d", st)
	}
	u2 := signIn(oidcop.User2)
	st, body, _ = u2.do("GET", "/api/me", nil, false)
	if st != http.StatusOK || len(rolesOf(body)) != 0 {
		t.Fatalf("the second user, in no mapped group: %d %v", st, body)
	}
	if st, _, _ := u2.do("GET", "/api/rooms", nil, false); st != http.StatusForbidden {
		t.Fatalf("a meeting user lists rooms: %d", st)
	}
	st, body, _ = root.do("GET", "/api/sessions", nil, false)
	methods := []string{}
	for _, s := range body["sessions"].([]any) {
		methods = append(methods, s.(map[string]any)["method"].(string))
	}
	if st != http.StatusOK || !slices.Contains(methods, "oidc") || !slices.Contains(methods, "password") {
		t.Fatalf("sessions list their sign-in methods: %d %v", st, methods)
	}
	// A callback with a made-up state is refused.
	b := browser()
	b.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := b.hc.Get(srv.URL() + "/api/oidc/callback?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "sso-error=") {
		t.Fatalf("forged state: %d %s", resp.StatusCode, loc)
	}

	// The issuer must be the one the provider presents.
	settings["issuer"] = strings.Replace(op.Issuer, "127.0.0.1", "localhost", 1)
	if st, body, _ := root.do("PUT", "/api/settings/oidc", settings, true); st != http.StatusOK {
		t.Fatalf("store the settings: %d %v", st, body)
	}
	st, body, _ = browser().do("GET", "/api/oidc/login", nil, false)
	if st != http.StatusBadGateway || !strings.Contains(errMessage(body), "issuer") {
		t.Fatalf("a provider with another issuer: %d %v", st, body)
	}
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}
