package e2e

import (
	"context"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/perm"
	"conclave/internal/testutil/browser"
)

// TestAuditorAndSystemPages: an auditor sees only the audit log page,
// filters it to the failed sign-ins and exports them as CSV; an
// administrator's system page shows the version and build, the clock's
// state with its alarm, and makes a backup that it lists for download.
func TestAuditorAndSystemPages(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	for _, a := range []auth.NewAccount{
		{Username: "root", Password: "Root-Password-12", KeepPassword: true, Roles: []string{perm.Administrator}},
		{Username: "audrey", Password: "Audrey-Password-1", KeepPassword: true, Roles: []string{perm.Auditor}},
	} {
		if _, err := srv.Lifecycle().Create(ctx, auth.CLIActor(), a); err != nil {
			t.Fatal(err)
		}
	}
	b := browser.Start(t)

	// A failed sign-in to find.
	mallory := b.NewPage(t, "mallory")
	signInAdminPage(t, mallory, srv.URL()+"/admin", "root", "Not-The-Password-1")
	mallory.WaitJS(t, "mallory: refused", `!document.querySelector('#login-error').hidden`, 10*time.Second)

	aud := b.NewPage(t, "audrey")
	signInAdminPage(t, aud, srv.URL()+"/admin", "audrey", "Audrey-Password-1")
	aud.WaitJS(t, "audrey: only the audit log", `(() => { const b = [...document.querySelectorAll('#admin-nav button')].map((x) => x.dataset.page);
		return b.length === 1 && b[0] === 'audit' && !document.querySelector('#screen-audit').hidden; })()`, 15*time.Second)
	aud.WaitJS(t, "audrey: records listed", `document.querySelectorAll('#audit-records tr').length > 2`, 10*time.Second)
	if err := aud.SetValue("#audit-action", "login-failed"); err != nil {
		t.Fatal(err)
	}
	if err := aud.Click("#audit-apply"); err != nil {
		t.Fatal(err)
	}
	aud.WaitJS(t, "audrey: only failed sign-ins", `(() => { const rows = [...document.querySelectorAll('#audit-records tr')];
		return rows.length >= 1 && rows.every((r) => r.children[4].textContent === 'login-failed' && r.children[6].textContent === 'failure'); })()`, 10*time.Second)
	var csv string
	if err := aud.Eval(`(async () => (await fetch(document.querySelector('#audit-csv').href)).text())()`, &csv); err != nil {
		t.Fatal(err)
	}
	if len(csv) < 20 || csv[:15] != "seq,time,actor," {
		t.Fatalf("the exported CSV: %q", csv)
	}
	if err := aud.Click("#audit-verify"); err != nil {
		t.Fatal(err)
	}
	aud.WaitJS(t, "audrey: chain verified", `/^Intact/.test(document.querySelector('#audit-verified').textContent)`, 10*time.Second)

	root := b.NewPage(t, "root")
	signInAdminPage(t, root, srv.URL()+"/admin#system", "root", "Root-Password-12")
	root.WaitJS(t, "root: system page", `!document.querySelector('#screen-system').hidden && /dev|v\d/.test(document.querySelector('#system-status').textContent)
		&& /clock/i.test(document.querySelector('#system-status').textContent)`, 15*time.Second)
	if err := root.SetValue("#backup-passphrase", "a long backup passphrase"); err != nil {
		t.Fatal(err)
	}
	if err := root.Click("#backup-create button[type=submit]"); err != nil {
		t.Fatal(err)
	}
	root.WaitJS(t, "root: the backup listed with a download link", `!!document.querySelector('#system-backups a[download^="conclave-backup-"]')`, 20*time.Second)
}
