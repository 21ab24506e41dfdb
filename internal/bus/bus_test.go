package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"conclave/internal/nodeca"
	"conclave/internal/store"
)

// TestNodesOnTheBus: enrolled nodes connect to the embedded NATS server
// with their certificates and publish their status under their own name
// only; a node without a certificate of the cluster, or a removed one, is
// not admitted.
func TestNodesOnTheBus(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	ca, err := nodeca.Open(filepath.Join(dir, "cluster"), "Example", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	leaf, err := ca.IssueSelf(&key.PublicKey, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	mgmtCert := &tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Cert().Raw}, PrivateKey: key, Leaf: leaf}
	trust := nodeca.Trust{Roots: ca.Pool(), Revoked: ca.Revoked}
	srv, err := Start(Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "jetstream"), Cert: func() *tls.Certificate { return mgmtCert }, Trust: trust, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := nodeca.Listen(ca, "127.0.0.1:0", []string{"127.0.0.1"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	enrol := func(name string) *nodeca.Node {
		tok, err := ca.NewToken(ctx, name, nodeca.RoleConference, "", "test", 0)
		if err != nil {
			t.Fatal(err)
		}
		n, err := nodeca.Enrol(ctx, t.TempDir(), ln.Addr().String(), tok, ca.Fingerprint(), []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b := enrol("node-a"), enrol("node-b")

	mgmt, err := Connect(srv.URL(), func() *tls.Certificate { return mgmtCert }, trust, "127.0.0.1", "management")
	if err != nil {
		t.Fatal(err)
	}
	defer mgmt.Close()
	status, err := mgmt.SubscribeSync(NodePrefix + "*.status")
	if err != nil {
		t.Fatal(err)
	}
	mgmt.Flush()

	nodeTrust := nodeca.Trust{Roots: a.Roots(), Roles: []string{nodeca.RoleManagement}}
	ca1, err := Connect(srv.URL(), a.Certificate, nodeTrust, "127.0.0.1", "node-a")
	if err != nil {
		t.Fatalf("an enrolled node cannot connect: %v", err)
	}
	defer ca1.Close()
	if cs, err := ca1.TLSConnectionState(); err != nil || cs.CipherSuite != tls.TLS_AES_256_GCM_SHA384 || cs.CurveID != tls.CurveP384 {
		t.Errorf("bus TLS: %v %s %v", err, tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	}
	// Its own subject reaches the management node; another node's does
	// not (the server refuses the publication). The forged one is sent
	// first on the same connection, so it would arrive first.
	ca1.Publish(StatusSubject("node-b"), []byte("forged"))
	ca1.Publish(StatusSubject("node-a"), []byte("load=3"))
	ca1.Flush()
	msg, err := status.NextMsg(5 * time.Second)
	if err != nil || msg.Subject != StatusSubject("node-a") || string(msg.Data) != "load=3" {
		t.Fatalf("status received: %v %v", msg, err)
	}

	// The management node prepares JetStream; a node reads the
	// configuration and delivers to its spool, and can do nothing else
	// with either.
	kv, _, err := Setup(ctx, mgmt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "rooms.x", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	nodeKV, err := ConfigBucketOf(ctx, ca1)
	if err != nil {
		t.Fatalf("a node cannot open the configuration: %v", err)
	}
	w, err := nodeKV.WatchAll(ctx)
	if err != nil {
		t.Fatalf("a node cannot watch the configuration: %v", err)
	}
	if e := <-w.Updates(); e == nil || string(e.Value()) != "v1" {
		t.Fatalf("watched %v", e)
	}
	w.Stop()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := nodeKV.Put(wctx, "rooms.x", []byte("forged")); err == nil {
		t.Error("a node wrote the configuration")
	}
	cancel()
	js, _ := jetstream.New(ca1)
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := js.DeleteKeyValue(dctx, ConfigBucket); err == nil {
		t.Error("a node deleted the configuration")
	}
	cancel()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := js.Publish(pctx, SpoolSubject("node-a"), []byte("{}")); err != nil {
		t.Errorf("a node cannot deliver to its spool: %v", err)
	}
	cancel()
	pctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	if _, err := js.Publish(pctx, SpoolSubject("node-b"), []byte("{}")); err == nil {
		t.Error("a node delivered to another node's spool")
	}
	cancel()
	if e, err := mgmt.JetStream(); err == nil {
		if si, err := e.StreamInfo(SpoolStream); err != nil || si.State.Msgs != 1 {
			t.Errorf("spool holds %v (%v), want the one entry", si, err)
		}
	}

	// Another cluster's node, and a removed node, are not admitted.
	if err := ca.Remove(ctx, "node-b"); err != nil {
		t.Fatal(err)
	}
	if nc, err := Connect(srv.URL(), b.Certificate, nodeTrust, "127.0.0.1", "node-b"); err == nil {
		nc.Close()
		t.Error("a removed node connected to the bus")
	}
	if nc, err := Connect(srv.URL(), func() *tls.Certificate { return nil }, nodeTrust, "127.0.0.1", "anonymous"); err == nil {
		nc.Close()
		t.Error("a client without a certificate connected to the bus")
	}
}
