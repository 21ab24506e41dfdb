package server_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/nodeca"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/wait"
)

// TestMeetingFilesAcrossNodes: a file Ann shares on node A is downloaded
// byte for byte by Bob, a member of the same meeting on node B (fetched
// from A on demand); a participant of another meeting on B, a request
// without a participant's token and an unknown id are refused as on one
// node; the file is deleted on A, and forgotten on B, when the meeting
// ends; and with A gone, B answers at once that the server keeping the
// file cannot be reached.
func TestMeetingFilesAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	t.Cleanup(func() { mgmt.Close() }) // after the nodes (cleanups run last first): a node closing while its bus is gone waits for a connection attempt
	for _, alias := range []string{"board", "other"} {
		if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: alias, DisplayName: alias}); err != nil {
			t.Fatal(err)
		}
	}
	mgmt.ConfigChanged()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	a := startNode(t, enrolNode(t, mgmt, "node-a"), bus)
	dirB := enrolNode(t, mgmt, "node-b")
	b := startNode(t, dirB, bus)
	for _, n := range []*server.Node{a, b} {
		wait.For(t, "the nodes to have the configuration", 20*time.Second, func() bool { have, cur := n.ConfigReady(); return have && cur })
	}
	wait.For(t, "the nodes to link", 20*time.Second, func() bool {
		return slices.Contains(a.Linked(), "node-b") && slices.Contains(b.Linked(), "node-a")
	})

	// meet puts Ann on A and Bob on B in one meeting of board.
	meet := func() (ann, bob *wsClient, aw, bw signal.Message) {
		t.Helper()
		ann, bob = dialURL(t, a.URL()), dialURL(t, b.URL())
		aw = ann.join("board", "Ann")
		wait.For(t, "node B to follow Ann's meeting", 10*time.Second, func() bool { return b.HasMembers("node-a", aw.Meeting) })
		bw = bob.join("board", "Bob")
		if aw.Meeting == "" || aw.Meeting != bw.Meeting || bw.UploadToken == "" {
			t.Fatalf("Ann (A) in meeting %q, Bob (B) in %q: want one meeting", aw.Meeting, bw.Meeting)
		}
		return ann, bob, aw, bw
	}
	// share uploads blob on A as Ann, and tells the meeting in a chat
	// message (as the browser does with the file's key), which Bob, on B,
	// waits for: the file's announcement travels on the same link before
	// it.
	share := func(ann, bob *wsClient, token string, blob []byte) string {
		t.Helper()
		st, data := fileRequestTo(t, a.URL(), "POST", "/api/files", token, blob)
		var up struct{ ID string }
		if st != http.StatusCreated || json.Unmarshal(data, &up) != nil || up.ID == "" {
			t.Fatalf("Ann's upload on A: %d %s", st, data)
		}
		ann.sendRaw(`{"v":1,"type":"chat","payload":"ZmlsZQ=="}`)
		if m := bob.next(signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeNotice, signal.TypeAnnounce); m.Type != signal.TypeChat {
			t.Fatalf("Bob got %s, want Ann's chat message", m.Type)
		}
		return up.ID
	}

	ann, bob, aw, bw := meet()
	blob := make([]byte, 3<<20+12345)
	rand.Read(blob)
	id := share(ann, bob, aw.UploadToken, blob)
	start := time.Now()
	if st, got := fileRequestTo(t, b.URL(), "GET", "/api/files/"+id, bw.UploadToken, nil); st != http.StatusOK || string(got) != string(blob) {
		t.Fatalf("Bob's download on B: %d, %d bytes (want the %d Ann uploaded on A)", st, len(got), len(blob))
	}
	t.Logf("Bob, on B, downloaded Ann's %d bytes kept by A in %v", len(blob), time.Since(start).Round(time.Millisecond))

	carl := dialURL(t, b.URL())
	cw := carl.join("other", "Carl")
	unknown := strings.Repeat("ab", 16)
	for _, c := range []struct {
		who, token, id string
		status         int
		code           string
	}{
		{"Carl, in another meeting on B", cw.UploadToken, id, http.StatusNotFound, "file-not-found"},
		{"a request without a participant's token", "", id, http.StatusUnauthorized, "no-meeting"},
		{"a request with a made-up token", "x" + bw.UploadToken, id, http.StatusUnauthorized, "no-meeting"},
		{"Bob asking for an unknown id", bw.UploadToken, unknown, http.StatusNotFound, "file-not-found"},
		{"Bob asking for a malformed id", bw.UploadToken, "..%2f..%2fetc", http.StatusNotFound, "file-not-found"},
	} {
		if st, data := fileRequestTo(t, b.URL(), "GET", "/api/files/"+c.id, c.token, nil); st != c.status || !strings.Contains(string(data), c.code) {
			t.Errorf("%s: %d %s, want %d %s", c.who, st, data, c.status, c.code)
		}
	}
	// Node A serves the file to the nodes of the meeting's members only:
	// node C, enrolled in the cluster but without members in it, is told
	// there is no such file, on the same connection B fetches it on.
	dirC := enrolNode(t, mgmt, "node-c")
	if head := askFile(t, a.RelayAddr().String(), dirB, aw.Meeting, id); !strings.Contains(head, `"ok"`) {
		t.Errorf("node B's own request: %s", head)
	}
	if head := askFile(t, a.RelayAddr().String(), dirC, aw.Meeting, id); head != `{"status":"not-found"}` {
		t.Errorf("node C, without members in the meeting, was answered %s", head)
	}
	if stored, _ := a.Files(); stored != int64(len(blob)) {
		t.Errorf("A keeps %d bytes, want Ann's %d", stored, len(blob))
	}
	if stored, elsewhere := b.Files(); stored != 0 || elsewhere != 1 {
		t.Errorf("B keeps %d bytes and knows %d files elsewhere; want 0 and Ann's one (fetched on demand, not copied)", stored, elsewhere)
	}

	// The meeting ends: A deletes the file, B forgets it.
	ann.sendRaw(`{"v":1,"type":"leave"}`)
	bob.sendRaw(`{"v":1,"type":"leave"}`)
	wait.Until(t, 10*time.Second, func() bool {
		sa, _ := a.Files()
		_, eb := b.Files()
		return sa == 0 && eb == 0
	}, func() string {
		sa, ea := a.Files()
		sb, eb := b.Files()
		return fmt.Sprintf("the file to go with its meeting (A: %d bytes, %d elsewhere; B: %d bytes, %d elsewhere)", sa, ea, sb, eb)
	})

	// A new meeting; then node A goes away with its file.
	ann, bob, aw, bw = meet()
	id = share(ann, bob, aw.UploadToken, blob[:1000])
	if st, _ := fileRequestTo(t, b.URL(), "GET", "/api/files/"+id, bw.UploadToken, nil); st != http.StatusOK {
		t.Fatalf("Bob's download in the second meeting: %d", st)
	}
	a.Close()
	start = time.Now()
	st, data := fileRequestTo(t, b.URL(), "GET", "/api/files/"+id, bw.UploadToken, nil)
	took := time.Since(start)
	if st != http.StatusBadGateway || !strings.Contains(string(data), "file-unreachable") || !strings.Contains(string(data), "cannot be reached") {
		t.Fatalf("with node A gone, Bob's download: %d %s, want 502 file-unreachable", st, data)
	}
	if took > 6*time.Second {
		t.Errorf("the answer took %v", took)
	}
	t.Logf("with node A gone, B answered %d in %v", st, took.Round(time.Millisecond))
}

// askFile sends a file request to the node-to-node listener at addr as
// the node enrolled in dir, and returns the answer's head.
func askFile(t *testing.T, addr, dir, meeting, id string) string {
	t.Helper()
	n, err := nodeca.LoadNode(filepath.Join(dir, server.NodeDir))
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeca.ClientConfig(n.Certificate, nodeca.Trust{Roots: n.Roots()}, "127.0.0.1")
	cfg.NextProtos = []string{"conclave-files/1"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := fmt.Sprintf(`{"meeting":%q,"id":%q}`, meeting, id)
	if _, err := c.Write(append([]byte{3, 0, 0, byte(len(req))}, req...)); err != nil {
		t.Fatal(err)
	}
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil || h[0] != 4 {
		t.Fatalf("answer: %x %v", h, err)
	}
	head := make([]byte, int(h[2])<<8|int(h[3]))
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	return string(head)
}

// TestMeetingFilesFromAnEdge: a file shared by a participant of an edge
// node, which has no node-to-node listener, reaches a member on an
// internal node (the edge connects back for it), and the other way.
func TestMeetingFilesFromAnEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, t.TempDir(), busPort)
	t.Cleanup(func() { mgmt.Close() }) // after the nodes (cleanups run last first): a node closing while its bus is gone waits for a connection attempt
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board"}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()
	bus := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	inside := startNode(t, enrolNode(t, mgmt, "node-a"), bus)
	edge := startNodeWith(t, enrolRole(t, mgmt, "dmz-1", nodeca.RoleEdge), bus, nodeOpts{NoRelayListener: true})
	for _, n := range []*server.Node{inside, edge} {
		wait.For(t, "the configuration", 20*time.Second, func() bool { have, cur := n.ConfigReady(); return have && cur })
	}
	wait.For(t, "the edge to link to the internal node", 20*time.Second, func() bool {
		return slices.Contains(edge.Linked(), "node-a") && slices.Contains(inside.Linked(), "dmz-1")
	})
	out, in := dialURL(t, edge.URL()), dialURL(t, inside.URL())
	ow := out.join("board", "Out")
	wait.For(t, "the internal node to follow the meeting", 10*time.Second, func() bool { return inside.HasMembers("dmz-1", ow.Meeting) })
	iw := in.join("board", "In")
	if iw.Meeting != ow.Meeting {
		t.Fatalf("two meetings: %q and %q", ow.Meeting, iw.Meeting)
	}
	for _, c := range []struct {
		from, to       *server.Node
		sender, getter *wsClient
		up, down       string
	}{
		{edge, inside, out, in, ow.UploadToken, iw.UploadToken},
		{inside, edge, in, out, iw.UploadToken, ow.UploadToken},
	} {
		blob := make([]byte, 200_000)
		rand.Read(blob)
		st, data := fileRequestTo(t, c.from.URL(), "POST", "/api/files", c.up, blob)
		var up struct{ ID string }
		if st != http.StatusCreated || json.Unmarshal(data, &up) != nil {
			t.Fatalf("upload on %s: %d %s", c.from.Name(), st, data)
		}
		c.sender.sendRaw(`{"v":1,"type":"chat","payload":"ZmlsZQ=="}`)
		if m := c.getter.next(signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeNotice, signal.TypeAnnounce); m.Type != signal.TypeChat {
			t.Fatalf("got %s, want the chat message", m.Type)
		}
		if st, got := fileRequestTo(t, c.to.URL(), "GET", "/api/files/"+up.ID, c.down, nil); st != http.StatusOK || string(got) != string(blob) {
			t.Errorf("a file of %s downloaded on %s: %d, %d bytes", c.from.Name(), c.to.Name(), st, len(got))
		}
	}
}
