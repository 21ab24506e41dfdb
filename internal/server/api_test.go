package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/pgtest"
	"conclave/internal/testutil/testserver"
)

type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
}

func newAPIClient(t *testing.T, srv *testserver.Server) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, base: srv.URL(), hc: &http.Client{Jar: jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
}

func (c *apiClient) do(method, path string, body any, withCSRF bool) (int, map[string]any, http.Header) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	if withCSRF {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(data, &out); err != nil {
			c.t.Fatalf("%s %s: invalid JSON %q", method, path, data)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// TestAdminFlow: the first administrator enrols with the printed link,
// signs in, and manages rooms; the link works only once, and a
// state-changing request without the CSRF token is refused.
// TestAdminFlow runs on both store engines: the embedded SQLite and
// PostgreSQL (--database).
func TestAdminFlow(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testAdminFlow(t, testserver.Options{}) })
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		testAdminFlow(t, testserver.Options{Config: func(c *config.Config) { c.Database = url }})
	})
}

func testAdminFlow(t *testing.T, opts testserver.Options) {
	srv := testserver.Start(t, opts)
	if got := srv.Store().(*store.DB).Engine(); opts.Config != nil && got != "postgres" {
		t.Fatalf("store engine = %s, want postgres", got)
	}
	link, created, err := srv.EnrolmentLink(context.Background())
	if err != nil || !created {
		t.Fatalf("EnrolmentLink = %q, %v, %v", link, created, err)
	}
	token := link[strings.Index(link, "#")+1:]
	c := newAPIClient(t, srv)

	st, body, _ := c.do("POST", "/api/enrol", map[string]string{"token": token, "username": "root", "password": "short"}, false)
	if st != http.StatusBadRequest || errCode(body) != "password-policy" {
		t.Fatalf("weak password: %d %v", st, body)
	}
	enrol := map[string]string{"token": token, "username": "root", "displayName": "Root", "password": "Correct-Horse-42"}
	if st, body, _ := c.do("POST", "/api/enrol", enrol, false); st != http.StatusCreated {
		t.Fatalf("enrol: %d %v", st, body)
	}
	enrol["username"] = "root2"
	if st, body, _ := c.do("POST", "/api/enrol", enrol, false); st != http.StatusBadRequest || errCode(body) != "enrolment-invalid" {
		t.Fatalf("second use of the link: %d %v", st, body)
	}
	if _, created, _ := srv.EnrolmentLink(context.Background()); created {
		t.Error("a new enrolment link was made although an administrator exists")
	}

	if st, _, _ := c.do("GET", "/api/rooms", nil, false); st != http.StatusUnauthorized {
		t.Fatalf("rooms before login: %d", st)
	}
	if st, body, _ := c.do("POST", "/api/login", map[string]string{"username": "root", "password": "wrong-Password-1"}, false); st != http.StatusUnauthorized || errCode(body) != "bad-credentials" {
		t.Fatalf("wrong password: %d %v", st, body)
	}
	st, body, hdr := c.do("POST", "/api/login", map[string]string{"username": "root", "password": "Correct-Horse-42"}, false)
	if st != http.StatusOK {
		t.Fatalf("login: %d %v", st, body)
	}
	c.csrf, _ = body["csrf"].(string)
	if c.csrf == "" {
		t.Fatal("login returned no CSRF token")
	}
	cookie := hdr.Get("Set-Cookie")
	for _, attr := range []string{"Secure", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie lacks %s: %s", attr, cookie)
		}
	}

	room := map[string]string{"alias": "board", "name": "Board meeting"}
	if st, body, _ := c.do("POST", "/api/rooms", room, false); st != http.StatusForbidden || errCode(body) != "csrf" {
		t.Fatalf("create room without CSRF token: %d %v", st, body)
	}
	if st, body, _ := c.do("POST", "/api/rooms", room, true); st != http.StatusCreated || !strings.HasSuffix(body["url"].(string), "/r/board") {
		t.Fatalf("create room: %d %v", st, body)
	}
	if st, body, _ := c.do("POST", "/api/rooms", room, true); st != http.StatusConflict {
		t.Fatalf("duplicate room: %d %v", st, body)
	}
	if st, body, _ := c.do("POST", "/api/rooms", map[string]string{"alias": "Bad Alias!"}, true); st != http.StatusBadRequest || errCode(body) != "invalid-alias" {
		t.Fatalf("invalid alias: %d %v", st, body)
	}
	st, body, _ = c.do("GET", "/api/rooms", nil, false)
	if rooms, _ := body["rooms"].([]any); st != http.StatusOK || len(rooms) != 1 {
		t.Fatalf("list rooms: %d %v", st, body)
	}
	pinRoom := map[string]any{"alias": "vault", "name": "Vault", "access": "pin", "hostPin": "12345"}
	if st, body, _ := c.do("POST", "/api/rooms", pinRoom, true); st != http.StatusBadRequest || errCode(body) != "invalid-pin" {
		t.Fatalf("5-digit PIN: %d %v", st, body)
	}
	pinRoom["hostPin"] = "123456"
	pinRoom["guestPin"] = "654321"
	st, body, _ = c.do("POST", "/api/rooms", pinRoom, true)
	if st != http.StatusCreated || body["hasHostPin"] != true || body["hasGuestPin"] != true || body["access"] != "pin" {
		t.Fatalf("create PIN room: %d %v", st, body)
	}
	if strings.Contains(fmt.Sprint(body), "123456") {
		t.Fatalf("the API returned a PIN: %v", body)
	}
	if st, body, _ := c.do("PATCH", "/api/rooms/vault", map[string]any{"hostPin": ""}, true); st != http.StatusBadRequest || errCode(body) != "invalid-access" {
		t.Fatalf("clearing a PIN room's host PIN: %d %v", st, body)
	}
	if st, body, _ := c.do("PATCH", "/api/rooms/vault", map[string]any{"guestPin": "", "allowGuests": false}, true); st != http.StatusOK || body["hasGuestPin"] != false || body["allowGuests"] != false {
		t.Fatalf("update room: %d %v", st, body)
	}
	if st, body, _ := c.do("PUT", "/api/rooms/vault/members/root", map[string]string{"role": "host"}, true); st != http.StatusNoContent {
		t.Fatalf("add member: %d %v", st, body)
	}
	st, body, _ = c.do("GET", "/api/rooms/vault/members", nil, false)
	if members, _ := body["members"].([]any); st != http.StatusOK || len(members) != 1 {
		t.Fatalf("members: %d %v", st, body)
	}
	if st, _, _ := c.do("PUT", "/api/rooms/vault/members/nobody", map[string]string{"role": "host"}, true); st != http.StatusNotFound {
		t.Fatalf("add unknown member: %d", st)
	}
	if st, _, _ := c.do("DELETE", "/api/rooms/board", nil, false); st != http.StatusForbidden {
		t.Fatalf("delete without CSRF token: %d", st)
	}
	if st, _, _ := c.do("DELETE", "/api/rooms/board", nil, true); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	if st, body, _ := c.do("DELETE", "/api/rooms/board", nil, true); st != http.StatusNotFound || errCode(body) != "room-not-found" {
		t.Fatalf("deleted room: %d %v", st, body)
	}
	if st, _, _ := c.do("POST", "/api/logout", nil, true); st != http.StatusNoContent {
		t.Fatalf("logout: %d", st)
	}
	if st, _, _ := c.do("GET", "/api/me", nil, false); st != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", st)
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newAPIClient(t, srv)
	for _, path := range []string{"/", "/r/anything", "/api/me"} {
		_, _, h := c.do("GET", path, nil, false)
		for name, want := range map[string]string{
			"Strict-Transport-Security": "max-age=",
			"Content-Security-Policy":   "script-src 'self'",
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
		} {
			if !strings.Contains(h.Get(name), want) {
				t.Errorf("%s: %s = %q, want it to contain %q", path, name, h.Get(name), want)
			}
		}
	}
}

func TestOversizedBodyRefused(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newAPIClient(t, srv)
	st, body, _ := c.do("POST", "/api/login", map[string]string{"username": strings.Repeat("a", 100<<10), "password": "x"}, false)
	if st != http.StatusRequestEntityTooLarge || errCode(body) != "too-large" {
		t.Fatalf("oversized login: %d %v", st, body)
	}
}

// TestSessionLimit: an account has at most 10 sessions; an 11th sign-in is
// refused (not the oldest evicted); signing out everywhere ends them all.
func TestSessionLimit(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	hash, _ := auth.HashPassword("Correct-Horse-42")
	if _, err := srv.Store().CreateUser(context.Background(), store.User{Username: "ann", DisplayName: "Ann",
		PasswordHash: hash, Role: store.RoleUser, Enabled: true, PasswordChangedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	login := map[string]string{"username": "ann", "password": "Correct-Horse-42"}
	var clients []*apiClient
	for i := 0; i < 10; i++ {
		c := newAPIClient(t, srv)
		st, body, _ := c.do("POST", "/api/login", login, false)
		if st != 200 {
			t.Fatalf("login %d: %d %v", i+1, st, body)
		}
		c.csrf = body["csrf"].(string)
		clients = append(clients, c)
	}
	st, body, _ := newAPIClient(t, srv).do("POST", "/api/login", login, false)
	if st != http.StatusForbidden || errCode(body) != "session-limit" {
		t.Fatalf("11th login: %d %v, want 403 session-limit", st, body)
	}
	if st, _, _ := clients[0].do("GET", "/api/me", nil, false); st != 200 {
		t.Fatalf("the first session was evicted: %d", st)
	}
	if st, _, _ := clients[3].do("POST", "/api/logout-everywhere", nil, false); st != http.StatusForbidden {
		t.Fatalf("logout everywhere without CSRF token: %d", st)
	}
	if st, _, _ := clients[3].do("POST", "/api/logout-everywhere", nil, true); st != http.StatusNoContent {
		t.Fatalf("logout everywhere: %d", st)
	}
	for i, c := range clients {
		if st, _, _ := c.do("GET", "/api/me", nil, false); st != http.StatusUnauthorized {
			t.Fatalf("session %d still valid after logout everywhere: %d", i+1, st)
		}
	}
	if st, _, _ := newAPIClient(t, srv).do("POST", "/api/login", login, false); st != 200 {
		t.Fatalf("login after logout everywhere: %d", st)
	}
}

// TestLoginLockout: wrong passwords slow down then lock the account, with
// the same answers for an unknown username.
func TestLoginLockout(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)
	hash, _ := auth.HashPassword("Correct-Horse-42")
	if _, err := srv.Store().CreateUser(context.Background(), store.User{Username: "ann", DisplayName: "Ann",
		PasswordHash: hash, Role: store.RoleUser, Enabled: true, PasswordChangedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"ann", "nobody"} {
		c := newAPIClient(t, srv)
		var codes []string
		for i := 0; i < 12; i++ {
			_, body, _ := c.do("POST", "/api/login", map[string]string{"username": user, "password": "Wrong-Guess-123"}, false)
			codes = append(codes, errCode(body))
			clk.Advance(90 * time.Second) // past any delay, within the 15-minute run
		}
		if codes[0] != "bad-credentials" || codes[11] != "locked" {
			t.Fatalf("%s: answers %v; want bad-credentials first and locked at the end", user, codes)
		}
		t.Logf("%s: %v", user, codes)
		st, body, _ := c.do("POST", "/api/login", map[string]string{"username": user, "password": "Correct-Horse-42"}, false)
		if st != http.StatusTooManyRequests {
			t.Fatalf("%s: right password during the lock: %d %v", user, st, body)
		}
	}
	clk.Advance(16 * time.Minute)
	if st, body, _ := newAPIClient(t, srv).do("POST", "/api/login", map[string]string{"username": "ann", "password": "Correct-Horse-42"}, false); st != 200 {
		t.Fatalf("after the lock: %d %v", st, body)
	}
}
