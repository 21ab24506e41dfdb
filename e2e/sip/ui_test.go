package sip_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/netns"
	"conclave/internal/testutil/testserver"
)

// The phones and the browser of these tests see only loopback.
func TestMain(m *testing.M) { netns.Isolate(m) }

const uiPassword = "Telephony-page-pw1!"

// telephonyPage signs a new account holding roles in, in a browser, and
// opens the telephony page.
func telephonyPage(t *testing.T, srv *testserver.Server, username string, roles ...string) *browser.Page {
	t.Helper()
	hash, err := auth.HashPassword(uiPassword)
	if err != nil {
		t.Fatal(err)
	}
	role := store.RoleUser
	if len(roles) > 0 {
		role = store.RoleAdmin
	}
	if _, err := srv.Store().CreateUser(context.Background(), store.User{Username: username, DisplayName: username,
		PasswordHash: hash, Role: role, Roles: roles, Enabled: true, PasswordChangedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	p := browser.Start(t).NewPage(t, username)
	if err := p.Navigate(srv.URL() + "/admin"); err != nil {
		t.Fatal(err)
	}
	var status int
	if err := p.Eval(fmt.Sprintf(`fetch('/api/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
		body: JSON.stringify({username: %q, password: %q})}).then(r => r.status)`, username, uiPassword), &status); err != nil || status != 200 {
		t.Fatalf("sign in %s: %d %v", username, status, err)
	}
	if err := p.Navigate(srv.URL() + "/telephony"); err != nil {
		t.Fatal(err)
	}
	return p
}

// pageShows waits until the element with id contains text.
func pageShows(t *testing.T, p *browser.Page, id, text string) {
	t.Helper()
	p.WaitJS(t, id+" shows "+strconv.Quote(text),
		fmt.Sprintf(`(document.getElementById(%q)?.textContent || '').includes(%q)`, id, text), 20*time.Second)
}
