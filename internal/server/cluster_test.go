package server_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/nodeca"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/wait"
)

// clusterMgmt starts a management node with its cluster listener and
// embedded bus on fixed loopback ports (so that it can be started again
// on the same ones) in dir.
func clusterMgmt(t *testing.T, dir string, busPort int) *server.Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.MediaUDP = "127.0.0.1:0"
	cfg.MediaTCP = ""
	cfg.Hosts = []string{"127.0.0.1"}
	cfg.ClusterListen = "127.0.0.1:0"
	cfg.Cluster.BusListen = "127.0.0.1:" + strconv.Itoa(busPort)
	srv, err := server.Open(cfg, slog.New(slog.DiscardHandler), server.Options{Binary: "-"})
	if err != nil {
		t.Fatalf("open management node: %v", err)
	}
	srv.Start()
	return srv
}

// enrolNode makes a conference node called name known to mgmt and enrols
// it into a fresh data directory, which it returns.
func enrolNode(t *testing.T, mgmt *server.Server, name string) string {
	t.Helper()
	ctx := context.Background()
	tok, err := mgmt.ClusterCA().NewToken(ctx, name, nodeca.RoleConference, "", "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := nodeca.Enrol(ctx, filepath.Join(dir, server.NodeDir), mgmt.ClusterAddr().String(), tok,
		mgmt.ClusterCA().Fingerprint(), []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startNode(t *testing.T, dir, busURL string) *server.Node {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.MediaUDP = "127.0.0.1:0"
	cfg.MediaTCP = ""
	cfg.Hosts = []string{"127.0.0.1"}
	cfg.Cluster.NATS = busURL
	n, err := server.OpenNode(cfg, slog.New(slog.DiscardHandler), server.NodeOptions{})
	if err != nil {
		t.Fatalf("open conference node: %v", err)
	}
	n.Start()
	t.Cleanup(func() { n.Close() })
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func dialURL(t *testing.T, base string) *wsClient {
	t.Helper()
	return dialURLFrom(t, base, "127.0.0.1")
}

// dialURLFrom connects to the node at base from a chosen loopback
// address (another person's machine).
func dialURLFrom(t *testing.T, base, source string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

// joinPIN joins room with pin and returns the first answer.
func (w *wsClient) joinPIN(room, name, pin string) signal.Message {
	w.t.Helper()
	w.sendRaw(`{"v":1,"type":"join","room":"` + room + `","name":"` + name + `","pin":"` + pin + `"}`)
	return w.next(signal.TypeRoomState, signal.TypeNotice)
}

// TestConferenceNodeWithoutManagement: a conference node gets the rooms
// over the bus, admits with the right PIN and refuses a wrong one; with
// the management node stopped it goes on doing both from the copy on its
// disk, and the audit entries of the outage reach the management node's
// log when it is back.
func TestConferenceNodeWithoutManagement(t *testing.T) {
	ctx := context.Background()
	mgmtDir := t.TempDir()
	busPort := freePort(t)
	mgmt := clusterMgmt(t, mgmtDir, busPort)
	defer func() { mgmt.Close() }()
	hostHash, err := auth.HashPIN("246810")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN,
		HostPINHash: hostHash}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()

	node := startNode(t, enrolNode(t, mgmt, "paris-1"), "tls://127.0.0.1:"+strconv.Itoa(busPort))
	wait.For(t, "the node to receive the configuration", 20*time.Second, func() bool {
		have, current := node.ConfigReady()
		return have && current
	})
	wait.For(t, "the management node to hear the node's status", 10*time.Second, func() bool {
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "paris-1" && n.Up && n.URL == node.URL() {
				return true
			}
		}
		return false
	})

	host := dialURL(t, node.URL())
	if m := host.joinPIN("board", "Host", "246810"); m.Type != signal.TypeWelcome {
		t.Fatalf("host PIN on the node: %+v", m)
	}
	if m := dialURL(t, node.URL()).joinPIN("board", "Mallory", "111111"); m.Type != signal.TypeError || m.Code != signal.CodeRoomUnavailable {
		t.Fatalf("wrong PIN on the node: %+v", m)
	}
	// The node's refusal reaches the management node's audit log.
	fromNode := func(source string) bool {
		recs, err := mgmt.AuditEvents(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Details["node"] == "paris-1" && r.Details["room"] == "board" && r.Source == source {
				return true
			}
		}
		return false
	}
	wait.For(t, "the node's audit entry at the management node", 20*time.Second, func() bool { return fromNode("127.0.0.1") })

	// The management node goes away.
	if err := mgmt.Close(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the node to notice", 10*time.Second, func() bool { _, current := node.ConfigReady(); return !current })
	second := dialURL(t, node.URL())
	if m := second.joinPIN("board", "Second host", "246810"); m.Type != signal.TypeWelcome {
		t.Fatalf("right PIN without management: %+v", m)
	}
	if m := dialURLFrom(t, node.URL(), "127.0.0.3").joinPIN("board", "Mallory", "999999"); m.Type != signal.TypeError || m.Code != signal.CodeRoomUnavailable {
		t.Fatalf("wrong PIN without management: %+v", m)
	}
	// The meeting goes on: the first host sees the second arrive.
	if m := host.next(signal.TypeRoomState, signal.TypeNotice, signal.TypeAnnounce); m.Type != signal.TypeParticipantJoined || m.Participant.Name != "Second host" {
		t.Fatalf("first host got %+v", m)
	}
	if node.Spooled() == 0 {
		t.Fatal("the refusal during the outage is not spooled")
	}

	// The management node is back: the outage's refusal arrives in its
	// audit log, from the node.
	mgmt = clusterMgmt(t, mgmtDir, busPort)
	wait.For(t, "the spooled entries to be delivered", 20*time.Second, func() bool { return node.Spooled() == 0 })
	wait.For(t, "the outage's entry in the management node's audit log", 20*time.Second, func() bool { return fromNode("127.0.0.3") })
}
