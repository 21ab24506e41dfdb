package server_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/config"
	"conclave/internal/nodeca"
	"conclave/internal/perm"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
	"conclave/internal/ticket"
)

// TestAccountOnConferenceNode: the management node sends signed-in
// accounts to a conference node (the location policy prefers it) with an
// admission ticket; the node admits them there with the account and the
// role management's gate decided (owner: host, member: participant),
// while an account that may not enter is refused by management itself
// and a participant without a ticket is refused by the node. Replayed,
// altered, expired, other-room and other-node tickets are refused with
// their own message. A person opening the meeting page on the node is
// pointed to the management node to sign in.
func TestAccountOnConferenceNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort, func(c *config.Config) {
		c.Cluster.Selection = "location"
		c.Cluster.Locations = []string{"127.0.0.0/8=paris"}
		c.TURNUDP, c.TURNTCP = "", "" // not needed; :3478 may be another test process's
	})
	defer mgmt.Close()
	srv := &testserver.Server{Server: mgmt}
	olga := addUser(t, srv, "olga", store.RoleUser, time.Now(), false)
	mia := addUser(t, srv, "mia", store.RoleUser, time.Now(), false)
	addUser(t, srv, "eve", store.RoleUser, time.Now(), false)
	staff, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "staff", DisplayName: "Staff", Access: store.AccessAccounts,
		MembersOnly: true, OwnerID: olga.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgmt.Store().AddRoomMember(ctx, staff.ID, mia.ID, store.MemberMember); err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "lounge", DisplayName: "Lounge"}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()
	clk := fakeclock.New(time.Now())
	dir := enrolLabelled(t, mgmt, "node-a", nodeca.RoleConference, "paris")
	mgmt.ConfigChanged() // the node's labels
	node := startNodeWith(t, dir, "tls://127.0.0.1:"+strconv.Itoa(busPort), nodeOpts{NodeOptions: server.NodeOptions{Clock: clk}})
	wait.For(t, "the node to have the configuration", 20*time.Second, func() bool { have, cur := node.ConfigReady(); return have && cur })
	wait.For(t, "the nodes to link and management to hear node-a", 20*time.Second, func() bool {
		if !slices.Contains(mgmt.Linked(), "node-a") || !slices.Contains(node.Linked(), "management") {
			return false
		}
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "node-a" && n.Up && slices.Contains(n.Labels, "paris") {
				return true
			}
		}
		return false
	})

	// redirect joins room on the management node as user ("" for nobody)
	// and returns the answer.
	redirect := func(user, room string) signal.Message {
		t.Helper()
		ws := dial(t, srv)
		if user != "" {
			ws = dialWithCookies(t, srv, signIn(t, srv, user))
		}
		ws.sendRaw(`{"v":1,"type":"join","room":"` + room + `","name":"` + user + `x"}`)
		return ws.next()
	}
	// onNodeWS joins room on the node with a ticket and returns the
	// connection and the answer.
	onNodeWS := func(base, room, tk string) (*wsClient, signal.Message) {
		t.Helper()
		ws := dialURL(t, base)
		ws.sendRaw(`{"v":1,"type":"join","room":"` + room + `","name":"Someone","redirected":true,"ticket":"` + tk + `"}`)
		return ws, ws.next(signal.TypeRoomState, signal.TypeNotice)
	}
	onNode := func(base, room, tk string) signal.Message {
		t.Helper()
		_, m := onNodeWS(base, room, tk)
		return m
	}
	refused := func(what string, m signal.Message, words string) {
		t.Helper()
		if m.Type != signal.TypeError || m.Code != signal.CodeTicketRefused || !m.Fatal || !strings.Contains(m.Text, words) {
			t.Errorf("%s: %+v, want ticket-refused saying %q", what, m, words)
		}
	}

	// Olga, the owner, joins through the native client: management sends
	// her to the node, where she is host.
	oc := signIn(t, srv, "olga")
	host, err := client.Dial(ctx, client.Options{URL: mgmt.URL() + "/r/staff", Name: "Olga", InsecureSkipVerify: true, Jar: oc.hc.Jar})
	if err != nil {
		t.Fatalf("Olga joins: %v", err)
	}
	defer host.Leave()
	if self := host.Self(); self.Role != signal.RoleHost || !self.Account {
		t.Errorf("Olga on the node: %+v", self)
	}
	if rep := node.Status(0); rep.Participants != 1 {
		t.Fatalf("the node hosts %d participants, want Olga", rep.Participants)
	}

	// Mia, a member: a ticket for the node, admitted there as participant.
	m := redirect("mia", "staff")
	if m.Type != signal.TypeRedirect || m.URL != node.URL() || !strings.HasPrefix(m.Ticket, ticket.Prefix) {
		t.Fatalf("Mia at the management node: %+v", m)
	}
	miaTicket := m.Ticket
	miaWS, w := onNodeWS(node.URL(), "staff", miaTicket)
	if w.Type != signal.TypeWelcome || w.Self.Role != signal.RoleParticipant || !w.Self.Account {
		t.Fatalf("Mia with her ticket on the node: %+v", w)
	}
	wait.For(t, "Olga to see Mia, signed in", 10*time.Second, func() bool {
		ps := host.Participants()
		return len(ps) == 1 && ps[0].Role == signal.RoleParticipant && ps[0].Account
	})
	refused("the same ticket again", onNode(node.URL(), "staff", miaTicket), "used already")

	// Eve may not enter: management refuses her, and sends her nowhere.
	if m := redirect("eve", "staff"); m.Type != signal.TypeError || m.Code != signal.CodeRoomUnavailable {
		t.Errorf("Eve, not a member: %+v", m)
	}
	// Nobody signed in is sent on without a ticket, and the node refuses.
	m = redirect("", "staff")
	if m.Type != signal.TypeRedirect || m.Ticket != "" {
		t.Fatalf("someone not signed in: %+v", m)
	}
	if w := dialURL(t, node.URL()).joinPIN("staff", "Nobody", ""); w.Type != signal.TypeError || w.Code != signal.CodeRoomUnavailable {
		t.Errorf("no ticket on the node: %+v", w)
	}

	// A fresh ticket of Mia's: not for another room (and not used up by
	// trying), not altered, not on another node, not once expired.
	tk := redirect("mia", "staff").Ticket
	refused("for another room", onNode(node.URL(), "lounge", tk), "another meeting")
	p64, s64, _ := strings.Cut(strings.TrimPrefix(tk, ticket.Prefix), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(p64)
	var c ticket.Claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Account.ID != mia.ID || c.Node != "node-a" || c.Role != "participant" {
		t.Fatalf("the ticket says %+v (%v)", c, err)
	}
	promoted := strings.Replace(string(payload), `"role":"participant"`, `"role":"host"`, 1)
	refused("made host", onNode(node.URL(), "staff", ticket.Prefix+base64.RawURLEncoding.EncodeToString([]byte(promoted))+"."+s64), "not valid")
	refused("on another node", onNode(mgmt.URL(), "staff", tk), "another server")
	clk.Set(time.Unix(c.Expires, 0).Add(ticket.Skew))
	refused("expired", onNode(node.URL(), "staff", tk), "expired")

	// An administrator disables Mia on the management node: her node
	// puts her out of the meeting at once.
	addAccount(t, srv, "root", perm.Administrator)
	_, _, root := loginStatus(t, srv, "root", testPassword)
	if st, body, _ := root.do("POST", "/api/users/mia/disable", nil, true); st != http.StatusOK {
		t.Fatalf("disable: %d %v", st, body)
	}
	if bye := miaWS.next(signal.TypeRoomState, signal.TypeNotice, signal.TypeParticipantJoined, signal.TypeParticipantUpdated,
		signal.TypeParticipantLeft, signal.TypeAnnounce, signal.TypeSpeaker); bye.Type != signal.TypeBye || bye.Reason != "account-disabled" {
		t.Errorf("Mia on the node after her account was disabled: %+v", bye)
	}

	// The meeting page on the node: nobody is signed in there, and the
	// sign-in link leads to the management node.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get(node.URL() + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me struct {
		Error  struct{ Code string }
		SignIn string
	}
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil || resp.StatusCode != http.StatusUnauthorized ||
		me.Error.Code != "no-session" || me.SignIn != mgmt.URL() {
		t.Errorf("GET /api/me on the node: %d %+v %v", resp.StatusCode, me, err)
	}
}
