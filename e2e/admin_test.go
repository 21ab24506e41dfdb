package e2e

import (
	"context"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/perm"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
)

// signInAdminPage signs in on the admin page at base with a username and
// password, as a person would type them.
func signInAdminPage(t *testing.T, p *browser.Page, url, username, password string) {
	t.Helper()
	if err := p.Navigate(url); err != nil {
		t.Fatalf("%s: open %s: %v", username, url, err)
	}
	p.WaitJS(t, username+": sign-in form", `!!document.querySelector('#username') && !document.querySelector('#screen-login').hidden`, 15*time.Second)
	if err := p.SetValue("#username", username); err != nil {
		t.Fatal(err)
	}
	if err := p.SetValue("#password", password); err != nil {
		t.Fatal(err)
	}
	if err := p.Click("#login"); err != nil {
		t.Fatal(err)
	}
}

// TestAdminDisablesSignedInUser: in the admin page, an administrator
// disables an account that is signed in elsewhere and in a meeting of an
// accounts-only room. That user is put out of the meeting at once ("Your
// account has been disabled"), the next API request of its session is
// refused, and it cannot enter the room again.
func TestAdminDisablesSignedInUser(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	if _, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessAccounts}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []auth.NewAccount{
		{Username: "root", Password: "Root-Password-12", KeepPassword: true, Roles: []string{perm.Administrator}},
		{Username: "mia", DisplayName: "Mia", Password: "Mia-Password-123", KeepPassword: true},
	} {
		if _, err := srv.Lifecycle().Create(ctx, auth.CLIActor(), a); err != nil {
			t.Fatal(err)
		}
	}
	b := browser.Start(t)

	// Mia signs in and enters the accounts-only room.
	mia := &participant{Page: b.NewPage(t, "mia"), t: t, name: "mia"}
	signInAdminPage(t, mia.Page, srv.URL()+"/admin?next=/r/board", "mia", "Mia-Password-123")
	mia.WaitJS(t, "mia: the meeting page", `location.pathname === '/r/board' && !!document.querySelector('#join') && !document.querySelector('#join').disabled`, 15*time.Second)
	if err := mia.SetValue("#name", "Mia"); err != nil {
		t.Fatal(err)
	}
	mia.click("#join")
	mia.inMeeting(20 * time.Second)

	// The administrator disables her from the Accounts page.
	admin := b.NewPage(t, "root")
	signInAdminPage(t, admin, srv.URL()+"/admin", "root", "Root-Password-12")
	admin.WaitJS(t, "root: the navigation", `!document.querySelector('#admin-nav').hidden && !!document.querySelector('#admin-nav button[data-page="users"]')`, 15*time.Second)
	if err := admin.Click(`#admin-nav button[data-page="users"]`); err != nil {
		t.Fatal(err)
	}
	admin.WaitJS(t, "root: mia's row", `!!document.querySelector('#users button.disable[data-username="mia"]')`, 10*time.Second)
	if err := admin.Click(`#users button.disable[data-username="mia"]`); err != nil {
		t.Fatal(err)
	}
	admin.WaitJS(t, "root: mia shown disabled", `document.querySelector('#users tr[data-username="mia"]')?.dataset.enabled === 'false' &&
		document.querySelector('#users tr[data-username="mia"] td.state')?.textContent === 'Disabled'`, 10*time.Second)

	// Mia is out of the meeting at once, told why.
	mia.WaitJS(t, "mia: put out of the meeting", `!document.querySelector('#screen-left').hidden &&
		document.querySelector('#left-message').textContent.includes('Your account has been disabled')`, 10*time.Second)
	// Her session's next request is refused.
	var status float64
	if err := mia.Eval(`fetch('/api/me', {credentials: 'same-origin'}).then(r => r.status)`, &status); err != nil || status != 401 {
		t.Fatalf("mia's next request: %v %v", status, err)
	}
	// She cannot enter the room again.
	if err := mia.Navigate(srv.URL() + "/r/board"); err != nil {
		t.Fatal(err)
	}
	mia.WaitJS(t, "mia: prejoin again", `!!document.querySelector('#join') && !document.querySelector('#join').disabled`, 15*time.Second)
	if err := mia.SetValue("#name", "Mia"); err != nil {
		t.Fatal(err)
	}
	mia.click("#join")
	mia.WaitJS(t, "mia: refused", `!document.querySelector('#join-error').hidden && document.querySelector('#join-error').textContent.length > 0`, 15*time.Second)
	var inMeeting bool
	mia.Eval(`!!document.querySelector('.tile[data-self="true"]') && !document.querySelector('#screen-meeting').hidden`, &inMeeting)
	if inMeeting {
		t.Fatal("a disabled account entered the accounts-only room")
	}
	recs, err := srv.AuditEvents(ctx, "account-disabled")
	if err != nil || len(recs) != 1 || recs[0].Actor != "root" || recs[0].Target != "mia" {
		t.Fatalf("audit: %v %v", recs, err)
	}
}
