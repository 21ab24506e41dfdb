package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/e2ee"
	"conclave/internal/perm"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
)

// Identities the server cannot mint silently, and names it cannot fake
// (issue 11), in the browser.

const trustPassword = "Correct-Horse-Battery-42"

// account makes a user with a password.
func account(t *testing.T, srv *server.Server, username, display string) store.User {
	t.Helper()
	hash, err := auth.HashPassword(trustPassword)
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Store().CreateUser(context.Background(), store.User{Username: username, DisplayName: display,
		PasswordHash: hash, Role: store.RoleUser, Enabled: true, PasswordChangedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// signIn opens a page of base signed in as username, its device certified
// (the home page prepares the identity: proof of possession, credential,
// log), and returns it.
func signIn(t *testing.T, b *browser.Browser, base, username string) *browser.Page {
	t.Helper()
	p := b.NewPage(t, username)
	if err := p.Navigate(base + "/"); err != nil {
		t.Fatal(err)
	}
	var st int
	js := fmt.Sprintf(`fetch('/api/login', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({username: %q, password: %q})}).then((r) => r.status)`, username, trustPassword)
	if err := p.Eval(js, &st); err != nil || st != 200 {
		t.Fatalf("%s: sign in: %d %v", username, st, err)
	}
	return p
}

// e2eeView is the page's read-only view of a participant (meeting.mjs conclaveE2EE).
type e2eeView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	FreeName    string `json:"freeName"`
	Account     string `json:"account"`
	Certified   bool   `json:"certified"`
	NameDiffers bool   `json:"nameDiffers"`
	Lookalike   string `json:"lookalike"`
	Revoked     bool   `json:"revoked"`
	NewDevice   bool   `json:"newDevice"`
	Self        bool   `json:"self"`
}

func (p *participant) views() []e2eeView {
	var raw string
	p.Eval(`JSON.stringify(window.conclaveE2EE.participants)`, &raw)
	var out []e2eeView
	json.Unmarshal([]byte(raw), &out)
	return out
}

func (p *participant) view(id string) (e2eeView, bool) {
	for _, v := range p.views() {
		if v.ID == id {
			return v, true
		}
	}
	return e2eeView{}, false
}

// TestImpersonationByName: Bob, signed in, joins as "Alice Martin" while
// Alice is there. Everyone sees him with his own certified identity (his
// account and display name), the name he typed shown as his claim and
// flagged as looking like Alice's; a guest who joins as "Аlice Martin"
// (a Cyrillic А) is not certified and flagged too.
func TestImpersonationByName(t *testing.T) {
	srv := startServer(t, "board")
	account(t, srv, "alice", "Alice Martin")
	account(t, srv, "bob", "Bob Stone")
	b := browser.Start(t)
	alice := joinPage(t, signIn(t, b, srv.URL(), "alice"), srv.URL(), "board", "Alice Martin")
	bob := joinPage(t, signIn(t, b, srv.URL(), "bob"), srv.URL(), "board", "Alice Martin")
	guest := join(t, b, srv.URL(), "board", "\u0410lice Martin")
	sameCode(t, alice, bob, guest)
	for _, at := range []*participant{alice, guest} {
		v, _ := at.view(bob.id)
		if !v.Certified || v.Name != "Bob Stone" || v.Account != "bob" || v.FreeName != "Alice Martin" || !v.NameDiffers || !strings.Contains(v.Lookalike, "@alice") {
			t.Errorf("%s sees Bob as %+v", at.name, v)
		}
	}
	a, _ := bob.view(alice.id)
	if !a.Certified || a.Name != "Alice Martin" || a.Account != "alice" || a.Lookalike != "" {
		t.Errorf("Bob sees Alice as %+v", a)
	}
	g, _ := alice.view(guest.id)
	if g.Certified || !strings.Contains(g.Lookalike, "@alice") {
		t.Errorf("Alice sees the guest as %+v", g)
	}
	// What a person reads in the list and on the tile.
	entry := alice.text(fmt.Sprintf(`#participants li[data-participant=%q]`, bob.id))
	for _, want := range []string{"Bob Stone", "@bob", "calls themselves “Alice Martin”", "looks like Alice Martin (@alice)"} {
		if !strings.Contains(entry, want) {
			t.Errorf("Alice's list entry for Bob %q lacks %q", entry, want)
		}
	}
}

// TestRevocationInBrowser: an administrator opens Mallory's account on the
// admin page and presses Revoke next to her device during a meeting. The
// page lists the device as revoked and the audit log names who did it.
// Within 10 s Alice's and Bob's pages show it revoked and encrypt under a
// new key generation, which goes only to each other (the server also sends
// Mallory's page away); they agree on a new code and keep decoding each
// other. (That the revoked device cannot decrypt frames of the new
// generation is shown frame by frame in meetingcrypto.test.mjs.)
func TestRevocationInBrowser(t *testing.T) {
	srv := startServer(t, "board")
	account(t, srv, "alice", "Alice")
	account(t, srv, "bob", "Bob")
	mu := account(t, srv, "mallory", "Mallory")
	b := browser.Start(t)
	alice := joinPage(t, signIn(t, b, srv.URL(), "alice"), srv.URL(), "board", "Alice")
	bob := joinPage(t, signIn(t, b, srv.URL(), "bob"), srv.URL(), "board", "Bob")
	mallory := joinPage(t, signIn(t, b, srv.URL(), "mallory"), srv.URL(), "board", "Mallory")
	sameCode(t, alice, bob, mallory)
	bob.waitMedia(alice, "camera", true)
	var gen int
	alice.Eval(`window.conclaveE2EE.senderKeyGeneration`, &gen)

	ctx := context.Background()
	devs, err := srv.Authority().Devices(ctx, mu)
	if err != nil || len(devs) != 1 {
		t.Fatalf("Mallory's devices: %+v %v", devs, err)
	}

	if _, err := srv.Lifecycle().Create(ctx, auth.CLIActor(), auth.NewAccount{Username: "root", Password: "Root-Password-12",
		KeepPassword: true, Roles: []string{perm.Administrator}}); err != nil {
		t.Fatal(err)
	}
	admin := b.NewPage(t, "root")
	if err := admin.AddScript(`window.confirm = () => true;`); err != nil {
		t.Fatal(err)
	}
	signInAdminPage(t, admin, srv.URL()+"/admin", "root", "Root-Password-12")
	admin.WaitJS(t, "root: the navigation", `!document.querySelector('#admin-nav').hidden && !!document.querySelector('#admin-nav button[data-page="users"]')`, 15*time.Second)
	if err := admin.Click(`#admin-nav button[data-page="users"]`); err != nil {
		t.Fatal(err)
	}
	admin.WaitJS(t, "root: mallory's row", `!!document.querySelector('#users button.manage[data-username="mallory"]')`, 10*time.Second)
	if err := admin.Click(`#users button.manage[data-username="mallory"]`); err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`#detail-devices li[data-fingerprint=%q]`, devs[0].Fingerprint)
	admin.WaitJS(t, "root: Mallory's device listed", fmt.Sprintf(`document.querySelector('%s')?.dataset.revoked === 'false' && !!document.querySelector('%s button')`, row, row), 10*time.Second)
	revoked := time.Now()
	if err := admin.Click(row + " button"); err != nil {
		t.Fatal(err)
	}
	admin.WaitJS(t, "root: the device shown revoked", fmt.Sprintf(`document.querySelector('%s')?.dataset.revoked === 'true' && !document.querySelector('%s button')`, row, row), 10*time.Second)
	for _, p := range []*participant{alice, bob} {
		p.WaitJS(t, p.name+": Mallory shown revoked, keys rotated", fmt.Sprintf(
			`document.querySelector('#e2ee-warning').textContent.includes('revoked the device of Mallory') && window.conclaveE2EE.senderKeyGeneration > %d`, gen), 10*time.Second)
	}
	t.Logf("revocation shown and keys rotated %v after the click", time.Since(revoked).Round(10*time.Millisecond))
	mallory.WaitJS(t, "Mallory: sent away", `!!document.querySelector('#e2ee-bar')?.hidden`, 10*time.Second)
	if devs, _ := srv.Authority().Devices(ctx, mu); len(devs) != 1 || !devs[0].Revoked {
		t.Errorf("the log does not hold the revocation: %+v", devs)
	}
	if recs, err := srv.AuditEvents(ctx, "device-revoked"); err != nil || len(recs) != 1 || recs[0].Actor != "root" {
		t.Errorf("audit of the revocation: %+v %v", recs, err)
	}
	code := sameCode(t, alice, bob)
	t.Logf("Alice and Bob agree on %s without Mallory", code)
	alice.waitMedia(bob, "camera", true)
	bob.waitMedia(alice, "camera", true)
}

// TestRogueDeviceReportedInBrowser: Ann's browser has a certified device
// and sits on the home page. The server certifies a device it controls in
// Ann's name: within a minute the page shows "a new device was certified
// for your account" with its fingerprint.
func TestRogueDeviceReportedInBrowser(t *testing.T) {
	srv := startServer(t, "board")
	ann := account(t, srv, "ann", "Ann")
	b := browser.Start(t)
	page := signIn(t, b, srv.URL(), "ann")
	// Reload: the home page prepares the signed-in identity (credential, log).
	if err := page.Navigate(srv.URL() + "/"); err != nil {
		t.Fatal(err)
	}
	p := &participant{Page: page, t: t, name: "Ann"}
	p.WaitJS(t, "Ann's device certified", `indexedDB.databases().then(() => true)`, 5*time.Second)
	waitDevices(t, srv, ann, 1)
	rogue, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&rogue.PublicKey)
	minted := time.Now()
	if _, _, err := srv.Authority().Certify(context.Background(), ann, pub); err != nil {
		t.Fatal(err)
	}
	fp, _ := e2ee.Fingerprint(&rogue.PublicKey)
	p.WaitJS(t, "Ann's page reports the new device", fmt.Sprintf(`(document.querySelector('[data-trust-alert]')?.textContent || '').includes(%q)`, fp), time.Minute)
	t.Logf("Ann's home page reported the rogue device %v after it was certified", time.Since(minted).Round(100*time.Millisecond))
}

// waitDevices waits until the log holds n devices of u.
func waitDevices(t *testing.T, srv *server.Server, u store.User, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		devs, err := srv.Authority().Devices(context.Background(), u)
		if err == nil && len(devs) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d devices of %s in the log, want %d", len(devs), u.Username, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
