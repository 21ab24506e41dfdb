package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"conclave/internal/auth"
	"conclave/internal/bus"
	"conclave/internal/config"
	"conclave/internal/nodeca"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/natsserver"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

// TestExternalNATS: `conclave cluster nats-config` writes the whole
// configuration of an external NATS server, and a NATS server runs the
// cluster's bus with it — the stock nats-server program (built from the
// module Conclave uses), and `conclave nats-server`: the management node
// started with --nats checks it and publishes the configuration there, an
// enrolled conference node (added to the users, server reloaded) receives
// it and admits a participant with the room's PIN. On that server a
// node's certificate can do only what bus.NodePermissions allows, a
// certificate of another CA is refused even when it claims to be the
// management node, and a removed node is cut off and refused once the
// users are written again and the server reloaded. `conclave nats-server`
// negotiates AES-256-GCM, as every other node-to-node link does; the
// stock program AES-128-GCM.
func TestExternalNATS(t *testing.T) {
	t.Run("nats-server", func(t *testing.T) {
		externalNATS(t, func(t *testing.T, conf, addr string) (reload func()) {
			nsrv := natsserver.Start(t, conf, addr)
			return func() {
				t.Helper()
				if err := nsrv.Reload(); err != nil {
					t.Fatal(err)
				}
				nsrv.WaitLog(t, "Reloaded server configuration", 10*time.Second)
			}
		}, 0)
	})
	t.Run("conclave nats-server", func(t *testing.T) {
		externalNATS(t, func(t *testing.T, conf, addr string) (reload func()) {
			srv, err := bus.StartExternal(conf, testlog.Logger(t, slog.LevelWarn))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			return func() {
				t.Helper()
				if err := srv.Reload(); err != nil {
					t.Fatal(err)
				}
			}
		}, tls.TLS_AES_256_GCM_SHA384)
	})
}

// externalNATS is TestExternalNATS with the NATS server start starts
// (it returns how to reload it and wait until it has); suite, when not
// zero, is the cipher suite the bus must negotiate.
func externalNATS(t *testing.T, start func(t *testing.T, conf, addr string) (reload func()), suite uint16) {
	ctx := context.Background()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	mgmtData, natsDir := t.TempDir(), t.TempDir()
	natsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	natsURL := "tls://" + natsAddr

	// Before the management node first starts: the NATS server's files.
	if code, out := run("cluster", "nats-config", "--data", mgmtData, "-out", natsDir, "-host", "127.0.0.1", "-listen", natsAddr); code != 0 {
		t.Fatalf("nats-config: %d %s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(natsDir, bus.ExternalKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the NATS server's key: %v %v", fi, err)
	}
	reload := start(t, filepath.Join(natsDir, bus.ExternalConfigFile), natsAddr)

	mgmt := testserver.Start(t, testserver.Options{Logger: testlog.Logger(t, slog.LevelWarn), Config: func(c *config.Config) {
		c.DataDir = mgmtData
		c.ClusterListen = "127.0.0.1:0"
		c.Cluster.RelayListen = "127.0.0.1:0"
		c.Cluster.NATS = natsURL
	}})
	if mgmt.BusURL() != "" {
		t.Fatalf("the management node runs an embedded bus (%s) beside --nats", mgmt.BusURL())
	}
	hostHash, err := auth.HashPIN("246810")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN, HostPINHash: hostHash}); err != nil {
		t.Fatal(err)
	}
	mgmt.ConfigChanged()

	// A conference node enrols; the NATS server learns it.
	code, out := run("cluster", "add-node", "--data", mgmtData, "-name", "paris-1", "-management", mgmt.ClusterAddr().String())
	m := regexp.MustCompile(`-token (\S+) -ca-pin (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("add-node: %d %s", code, out)
	}
	nodeData := t.TempDir()
	if code, out := run("node", "enrol", "--data", nodeData, "-management", mgmt.ClusterAddr().String(), "-token", m[1], "-ca-pin", m[2], "-host", "127.0.0.1"); code != 0 {
		t.Fatalf("node enrol: %d %s", code, out)
	}
	// Started before the server knows it, the node is refused and says
	// what to do; it connects by itself once the users are written again
	// and the server reloaded.
	var nodeLog lockedBuffer
	node := startNodeLog(t, nodeData, natsURL, slog.New(slog.NewTextHandler(io.MultiWriter(&nodeLog, testlog.Writer(t)), nil)))
	wait.Until(t, 10*time.Second, func() bool { return strings.Contains(nodeLog.String(), "nats-config") },
		func() string { return "the refused node to log the advice; its log:\n" + nodeLog.String() })
	if code, out := run("cluster", "nats-config", "--data", mgmtData, "-out", natsDir, "-users-only"); code != 0 || !strings.Contains(out, "1 nodes") {
		t.Fatalf("nats-config -users-only: %d %s", code, out)
	}
	reload()
	wait.For(t, "the node to receive the configuration from the external NATS server", 20*time.Second, func() bool {
		have, current := node.ConfigReady()
		return have && current
	})
	wait.For(t, "the management node to hear the node's status", 10*time.Second, func() bool {
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "paris-1" && n.Up {
				return true
			}
		}
		return false
	})
	// The node's certificate on the external server (a second
	// connection beside the node's).
	id, err := nodeca.LoadNode(filepath.Join(nodeData, server.NodeDir))
	if err != nil {
		t.Fatal(err)
	}
	violations := make(chan error, 16)
	probe, err := bus.Connect(natsURL, id.Certificate, nodeca.Trust{Roots: id.Roots()}, "127.0.0.1", "probe",
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("the node's certificate on the external server: %v", err)
	}
	defer probe.Close()
	kv, err := bus.ConfigBucketOf(ctx, probe)
	if err != nil {
		t.Fatal(err)
	}
	caughtUp(t, mgmt, kv)
	if got := joinPIN(t, node.URL(), "board", "246810"); got.Type != signal.TypeWelcome {
		t.Fatalf("the host PIN on the node: %+v", got)
	}
	if got := joinPIN(t, node.URL(), "board", "135790"); got.Type != signal.TypeError || got.Code != signal.CodeRoomUnavailable {
		t.Fatalf("a wrong PIN on the node: %+v", got)
	}

	// On it: TLS 1.3 on P-384, and nothing beyond bus.NodePermissions.
	cs, err := probe.TLSConnectionState()
	if err != nil || cs.Version != tls.VersionTLS13 || cs.CurveID != tls.CurveP384 {
		t.Fatalf("TLS with the external server: %x %v %v", cs.Version, cs.CurveID, err)
	}
	t.Logf("external NATS server: TLS 1.3, %s, %s", tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	if suite != 0 && cs.CipherSuite != suite {
		t.Errorf("the bus negotiated %s, want %s", tls.CipherSuiteName(cs.CipherSuite), tls.CipherSuiteName(suite))
	}
	denied := func(what string, do func() error) {
		t.Helper()
		if err := do(); err != nil {
			if strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				return
			}
			t.Fatalf("%s: %v", what, err)
		}
		probe.Flush()
		select {
		case err := <-violations:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("%s: %v, want a permissions violation", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: allowed", what)
		}
	}
	if err := probe.Publish(bus.StatusSubject("paris-1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	denied("publish another node's status", func() error { return probe.Publish(bus.StatusSubject("lyon-1"), []byte(`{}`)) })
	denied("deliver into another node's spool", func() error { return probe.Publish(bus.SpoolSubject("lyon-1"), []byte(`{}`)) })
	denied("write the configuration bucket", func() error { return probe.Publish("$KV."+bus.ConfigBucket+".rooms.board", []byte(`{}`)) })
	denied("purge the configuration", func() error { return probe.Publish("$JS.API.STREAM.PURGE.KV_"+bus.ConfigBucket, nil) })
	denied("read another node's commands", func() error {
		_, err := probe.Subscribe(bus.CommandSubject("lyon-1", bus.CommandDrain), func(*nats.Msg) {})
		return err
	})
	denied("read the spool", func() error { _, err := probe.Subscribe(bus.SpoolSubject("*"), func(*nats.Msg) {}); return err })
	select {
	case err := <-violations:
		t.Errorf("the node's own status was refused: %v", err)
	default:
	}

	// A certificate of another CA, even one naming the management node,
	// is refused.
	if _, err := bus.Connect(natsURL, foreignManagement(t), nodeca.Trust{Roots: id.Roots()}, "127.0.0.1", "intruder"); err == nil {
		t.Error("a certificate of another CA claiming the management node got onto the bus")
	}

	// Removing the node: once the users are written again and the
	// server reloaded, its connections are closed and it is refused.
	if code, out := run("cluster", "remove-node", "--data", mgmtData, "-name", "paris-1"); code != 0 || !strings.Contains(out, "-users-only") {
		t.Fatalf("remove-node: %d %s", code, out)
	}
	if code, out := run("cluster", "nats-config", "--data", mgmtData, "-out", natsDir, "-users-only"); code != 0 || !strings.Contains(out, "0 nodes") {
		t.Fatalf("nats-config -users-only: %d %s", code, out)
	}
	reload()
	wait.For(t, "the removed node's connection to be closed", 10*time.Second, func() bool { return !probe.IsConnected() })
	_, err = bus.Connect(natsURL, id.Certificate, nodeca.Trust{Roots: id.Roots()}, "127.0.0.1", "removed")
	if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), "nats-config") {
		t.Errorf("a removed node's certificate: %v, want refused with advice", err)
	}
}

// foreignManagement is a certificate of another cluster CA, for the
// management node of that cluster.
func foreignManagement(t *testing.T) func() *tls.Certificate {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := nodeca.Open(dir, "Elsewhere", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	leaf, err := ca.IssueSelf(&key.PublicKey, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Cert().Raw}, PrivateKey: key, Leaf: leaf}
	return func() *tls.Certificate { return cert }
}

// startNode runs the conference node enrolled in dir on the bus at url.
func startNode(t *testing.T, dir, url string) *server.Node {
	t.Helper()
	return startNodeLog(t, dir, url, testlog.Logger(t, slog.LevelInfo))
}

// lockedBuffer is a log written by one goroutine and read by another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNodeLog is startNode logging to log.
func startNodeLog(t *testing.T, dir, url string, log *slog.Logger) *server.Node {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.MediaUDP = "127.0.0.1:0"
	cfg.MediaTCP = ""
	cfg.Hosts = []string{"127.0.0.1"}
	cfg.Cluster.NATS = url
	cfg.Cluster.RelayListen = "127.0.0.1:0"
	n, err := server.OpenNode(cfg, log, server.NodeOptions{})
	if err != nil {
		t.Fatalf("open the conference node: %v", err)
	}
	n.Start()
	t.Cleanup(func() { n.Close() })
	return n
}

// joinPIN joins room on the node at base with pin and returns the
// answer (welcome or error).
func joinPIN(t *testing.T, base, room, pin string) signal.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	join, _ := json.Marshal(map[string]any{"v": signal.Version, "type": "join", "room": room, "name": "Ann", "pin": pin})
	if err := c.Write(ctx, websocket.MessageText, join); err != nil {
		t.Fatal(err)
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m signal.Message
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", data, err)
		}
		if m.Type == signal.TypeWelcome || m.Type == signal.TypeError {
			return m
		}
	}
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

// TestExternalNATSCluster: three nats-servers configured by `conclave
// cluster nats-config -routes` form one NATS cluster (routes admitted by
// their bus certificates); the management node on one and a conference
// node on another share the configuration, kept in three copies; when the
// management node's server dies, a room added then still reaches the node
// through the two others.
func TestExternalNATSCluster(t *testing.T) {
	ctx := context.Background()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	mgmtData, natsRoot := t.TempDir(), t.TempDir()
	var clients, routes, dirs []string
	for i := range 3 {
		clients = append(clients, "127.0.0.1:"+strconv.Itoa(freePort(t)))
		routes = append(routes, "127.0.0.1:"+strconv.Itoa(freePort(t)))
		dirs = append(dirs, filepath.Join(natsRoot, "nats-"+strconv.Itoa(i+1)))
	}
	for i, dir := range dirs {
		if code, out := run("cluster", "nats-config", "--data", mgmtData, "-out", dir, "-server-name", "nats-"+strconv.Itoa(i+1),
			"-host", "127.0.0.1", "-listen", clients[i], "-route-listen", routes[i], "-routes", strings.Join(routes, ",")); code != 0 {
			t.Fatalf("nats-config nats-%d: %d %s", i+1, code, out)
		}
	}
	var servers []*natsserver.Server
	for i, dir := range dirs {
		servers = append(servers, natsserver.Start(t, filepath.Join(dir, bus.ExternalConfigFile), clients[i]))
	}
	for i, s := range servers {
		wait.Until(t, 30*time.Second, func() bool {
			l := s.Log()
			return strings.Contains(l, "Self is new JetStream cluster metadata leader") || strings.Contains(l, "JetStream cluster new metadata leader:")
		}, func() string {
			return "nats-" + strconv.Itoa(i+1) + " to know the JetStream metadata leader:\n" + s.Log()
		})
	}
	for i, s := range servers {
		wait.Until(t, 10*time.Second, func() bool { return strings.Count(s.Log(), "Route connection created") >= 2 },
			func() string { return "nats-" + strconv.Itoa(i+1) + "'s routes to the two others:\n" + s.Log() })
	}

	mgmt := testserver.Start(t, testserver.Options{Logger: testlog.Logger(t, slog.LevelWarn), Config: func(c *config.Config) {
		c.DataDir = mgmtData
		c.ClusterListen = "127.0.0.1:0"
		c.Cluster.RelayListen = "127.0.0.1:0"
		c.Cluster.NATS = "tls://" + clients[0]
	}})
	pinRoom := func(alias string) {
		hash, err := auth.HashPIN("246810")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mgmt.Store().CreateRoom(ctx, store.Room{Alias: alias, DisplayName: alias, Access: store.AccessPIN, HostPINHash: hash}); err != nil {
			t.Fatal(err)
		}
		mgmt.ConfigChanged()
	}
	pinRoom("board")
	code, out := run("cluster", "add-node", "--data", mgmtData, "-name", "paris-1", "-management", mgmt.ClusterAddr().String())
	m := regexp.MustCompile(`-token (\S+) -ca-pin (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("add-node: %d %s", code, out)
	}
	nodeData := t.TempDir()
	if code, out := run("node", "enrol", "--data", nodeData, "-management", mgmt.ClusterAddr().String(), "-token", m[1], "-ca-pin", m[2], "-host", "127.0.0.1"); code != 0 {
		t.Fatalf("node enrol: %d %s", code, out)
	}
	for i, dir := range dirs {
		if code, out := run("cluster", "nats-config", "--data", mgmtData, "-out", dir, "-users-only"); code != 0 {
			t.Fatalf("nats-config -users-only: %d %s", code, out)
		}
		if err := servers[i].Reload(); err != nil {
			t.Fatal(err)
		}
		servers[i].WaitLog(t, "Reloaded server configuration", 10*time.Second)
	}
	node := startNode(t, nodeData, "tls://"+clients[1])
	wait.For(t, "the node to receive the configuration through another NATS server", 20*time.Second, func() bool {
		have, current := node.ConfigReady()
		return have && current
	})
	id, err := nodeca.LoadNode(filepath.Join(nodeData, server.NodeDir))
	if err != nil {
		t.Fatal(err)
	}
	probe, err := bus.Connect("tls://"+clients[2], id.Certificate, nodeca.Trust{Roots: id.Roots()}, "127.0.0.1", "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	kv, err := bus.ConfigBucketOf(ctx, probe)
	if err != nil {
		t.Fatal(err)
	}
	caughtUp(t, mgmt, kv)
	if got := joinPIN(t, node.URL(), "board", "246810"); got.Type != signal.TypeWelcome {
		t.Fatalf("the host PIN on the node: %+v", got)
	}
	bucket := func() jetstream.StreamInfo {
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return *st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	}
	if r := bucket().Config.Replicas; r != 3 {
		t.Fatalf("the configuration bucket has %d replicas on a NATS cluster of three", r)
	}

	// The management node's NATS server dies; the management node moves
	// to another, and a new room reaches the node.
	before := bucket().State.LastSeq
	servers[0].Stop()
	killed := time.Now()
	pinRoom("annex")
	wait.For(t, "the new room in the configuration bucket on the surviving servers", 30*time.Second, func() bool {
		st, err := kv.Status(ctx) // refused while the bucket elects a new leader
		return err == nil && st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq > before
	})
	caughtUp(t, mgmt, kv)
	t.Logf("the node applied the room added after the server's death %.1f s after the death", time.Since(killed).Seconds())
	if got := joinPIN(t, node.URL(), "annex", "246810"); got.Type != signal.TypeWelcome {
		t.Fatalf("the host PIN of the room added after the server's death: %+v", got)
	}
}

// caughtUp waits until node paris-1 says (in its status) that it applied
// the configuration bucket's last revision.
func caughtUp(t *testing.T, mgmt *testserver.Server, kv jetstream.KeyValue) {
	t.Helper()
	var last uint64
	wait.Until(t, 20*time.Second, func() bool {
		st, err := kv.Status(context.Background())
		if err != nil {
			return false
		}
		last = st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
		for _, n := range mgmt.NodeStatuses() {
			if n.Name == "paris-1" && n.Up && n.ConfigRevision >= last {
				return true
			}
		}
		return false
	}, func() string { return "the node to apply the configuration's revision " + strconv.FormatUint(last, 10) })
}

// TestNATSServerRefuses: `conclave nats-server` needs a configuration,
// and refuses one that does not hold every client to a certificate of the
// cluster CA, rather than running an open bus.
func TestNATSServerRefuses(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"nats-server"}, strings.NewReader(""), &out, &errb); code != 2 || !strings.Contains(errb.String(), "-c FILE") {
		t.Errorf("without -c: %d %q", code, errb.String())
	}
	open := filepath.Join(t.TempDir(), "open.conf")
	if err := os.WriteFile(open, []byte("listen: \"127.0.0.1:0\"\njetstream: enabled\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"nats-server", "-c", open}, strings.NewReader(""), &out, &errb); code != 1 || !strings.Contains(errb.String(), "verify_and_map") {
		t.Errorf("a configuration without client certificates: %d %q", code, errb.String())
	}
	// A port another program holds: the NATS server's own reason, at once.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	natsDir := t.TempDir()
	errb.Reset()
	if code := run([]string{"cluster", "nats-config", "--data", t.TempDir(), "-out", natsDir, "-host", "127.0.0.1", "-listen", held.Addr().String()},
		strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("nats-config: %d %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"nats-server", "-c", filepath.Join(natsDir, bus.ExternalConfigFile)}, strings.NewReader(""), &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "start the NATS server: Error listening on port: "+held.Addr().String()) {
		t.Errorf("a port in use: %d %q", code, errb.String())
	}
}
