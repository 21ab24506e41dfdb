package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/netns"
	"conclave/internal/testutil/pgtest"
)

// TestAccountOnNodeInBrowser: signed-in accounts on a conference node, in
// chromium (docs/cluster.md, "Signed-in accounts on conference nodes").
// The management node's policy (location) sends the clients' network to
// the node labelled paris, node-a. Olga, owner of the members-only room
// "staff", signs in on the management node, opens the room and joins: the
// management node redirects her with an admission ticket, and she is the
// host on node-a — the host controls show, her media flow with node-a's
// address, node-a counts her. Mia, a member, does the same and is a
// participant there. Both decode each other's video, see each other
// certified under their accounts, and show the same meeting code.
func TestAccountOnNodeInBrowser(t *testing.T) {
	bin := conclaveBinary(t)
	lan := netns.NewLAN(t, "mgmt", "a", "clients")
	mdata := t.TempDir()
	db := pgtest.NewDatabase(t)
	createStaffRoom(t, db)
	startManagement(t, lan, bin, "mgmt", mdata, db, "--node-selection", "location", "--location", lan.Addr("clients")+"/32=paris")
	node, _ := startConferenceNode(t, lan, bin, mdata, db, "mgmt", "node-a", "a", "paris")
	node.waitLog("cluster: configuration received", 60*time.Second)
	node.waitLog(`msg="cluster: linked to a node" node=node-a node=management`, 60*time.Second)

	br := browser.StartExec(t, lan.Wrapper(t, "clients", browser.Chromium(t)), browser.DefaultFlags())
	br.Allow(lan.Owns)
	base := "https://" + lan.Addr("mgmt") + ":8443"
	// The management node's view of the nodes, through its API, as an
	// administrator: node selection by location applies once it hears
	// node-a with the label from node-a's copy of the configuration.
	admin := signIn(t, br, base, "root")
	nodeJS := func(name, cond string) string {
		return fmt.Sprintf(`fetch('/api/nodes').then((r) => r.json()).then((b) => b.nodes.some((n) => n.name === %q && !!n.status && %s))`, name, cond)
	}
	admin.WaitJS(t, "the management node to hear node-a, up and labelled paris", nodeJS("node-a", `n.status.up && (n.status.labels || []).includes('paris')`), 30*time.Second)

	olga := joinSignedIn(t, br, base, "staff", "olga", "Olga")
	olga.WaitJS(t, "Olga: the host controls", `(() => { const e = document.querySelector('#toggle-lock'); return !!e && e.offsetParent !== null; })()`, 10*time.Second)
	mia := joinSignedIn(t, br, base, "staff", "mia", "Mia")
	olga.waitMedia(mia, "camera", true)
	mia.waitMedia(olga, "camera", true)
	code := sameCode(t, olga, mia)

	// Served by node-a: both pages' media flow with node-a's address, the
	// page stays the management node's, node-a counts both and the
	// management node nobody.
	for _, p := range []*participant{olga, mia} {
		pcs, err := p.CurrentPairs()
		if err != nil || len(pcs) == 0 {
			t.Fatalf("%s: candidate pairs %v %v", p.name, pcs, err)
		}
		for _, pairs := range pcs {
			for _, pair := range pairs {
				if pair.Remote.Address != lan.Addr("a") {
					t.Errorf("%s's media flow with %s, not node-a (%s)", p.name, pair, lan.Addr("a"))
				}
			}
		}
		var origin string
		p.Eval(`location.origin`, &origin)
		if origin != base {
			t.Errorf("%s's page is %s, want the management node's %s", p.name, origin, base)
		}
	}
	admin.WaitJS(t, "node-a to count Olga and Mia", nodeJS("node-a", `n.status.participants === 2`), 10*time.Second)
	admin.WaitJS(t, "the management node to count nobody", nodeJS("management", `n.status.participants === 0`), 10*time.Second)

	// Roles: Olga host, Mia a participant (no host controls); each sees
	// the other certified under the account.
	var miaHostControls bool
	mia.Eval(`(() => { const e = document.querySelector('#toggle-lock'); return !!e && e.offsetParent !== null; })()`, &miaHostControls)
	if miaHostControls {
		t.Error("Mia, a member, has the host controls")
	}
	for _, c := range []struct {
		at, of  *participant
		account string
	}{{olga, mia, "mia"}, {mia, olga, "olga"}} {
		if v, ok := c.at.view(c.of.id); !ok || !v.Certified || v.Account != c.account {
			t.Errorf("%s sees %s as %+v (listed: %v)", c.at.name, c.of.name, v, ok)
		}
	}
	t.Logf("Olga (host) and Mia (member) meet on node-a through the management node's redirect, meeting code %s", code)
}

// createStaffRoom makes, in the store db (before the management node
// starts), the accounts root (administrator), olga and mia, and the
// members-only room "staff" owned by olga with mia as a member.
func createStaffRoom(t *testing.T, db string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hash, err := auth.HashPassword(trustPassword)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, u := range []store.User{{Username: "root", DisplayName: "Root", Role: store.RoleAdmin},
		{Username: "olga", DisplayName: "Olga", Role: store.RoleUser}, {Username: "mia", DisplayName: "Mia", Role: store.RoleUser}} {
		u.PasswordHash, u.Enabled, u.PasswordChangedAt = hash, true, time.Now()
		made, err := st.CreateUser(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		ids[u.Username] = made.ID
	}
	room, err := st.CreateRoom(ctx, store.Room{Alias: "staff", DisplayName: "Staff", Access: store.AccessAccounts,
		MembersOnly: true, OwnerID: ids["olga"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddRoomMember(ctx, room.ID, ids["mia"], store.MemberMember); err != nil {
		t.Fatal(err)
	}
}

// joinSignedIn signs username in on the sign-in page at base (as a person
// types it), which returns to the meeting page of room, and joins as name.
func joinSignedIn(t *testing.T, b *browser.Browser, base, room, username, name string) *participant {
	t.Helper()
	p := &participant{Page: b.NewPage(t, name), t: t, name: name}
	signInAdminPage(t, p.Page, base+"/admin?next=/r/"+room, username, trustPassword)
	p.WaitJS(t, name+": the meeting page", fmt.Sprintf(`location.pathname === '/r/%s' && !!document.querySelector('#join') && !document.querySelector('#join').disabled`, room), 15*time.Second)
	if err := p.SetValue("#name", name); err != nil {
		t.Fatal(err)
	}
	p.click("#join")
	p.inMeeting(20 * time.Second)
	return p
}
