package bus

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"conclave/internal/nodeca"
	"conclave/internal/store"
)

// TestExternalConfigParses: the configuration written for an external
// NATS server, alone and as one of a NATS cluster, is what nats-server
// reads: TLS 1.3 on P-384 with certificates mapped to users, JetStream,
// routes authenticated by the bus certificate, and each node's user with
// exactly NodePermissions. Written again, it keeps the certificate.
func TestExternalConfigParses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ca, err := nodeca.Open(filepath.Join(dir, "cluster"), "Example", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	enrolled := now.Add(-time.Hour).Truncate(time.Microsecond)
	if err := st.EnrolNode(ctx, store.Node{Name: "paris-1", Role: nodeca.RoleConference, EnrolledAt: enrolled},
		store.NodeCert{Serial: "01", Node: "paris-1", IssuedAt: enrolled, NotAfter: now.Add(time.Hour), DER: []byte{0}}); err != nil {
		t.Fatal(err)
	}
	if err := st.EnrolNode(ctx, store.Node{Name: "gone", Role: nodeca.RoleConference, EnrolledAt: enrolled},
		store.NodeCert{Serial: "02", Node: "gone", IssuedAt: enrolled, NotAfter: now.Add(time.Hour), DER: []byte{0}}); err != nil {
		t.Fatal(err)
	}
	if err := ca.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	rec, _ := st.NodeByName(ctx, "paris-1")
	for _, routes := range [][]string{nil, {"nats-1.example.org:6222", "nats-2.example.org:6222"}} {
		out := t.TempDir()
		d := ExternalDir{Dir: out, Server: ExternalServer{Name: "nats-1", Routes: routes}, Hosts: []string{"nats-1.example.org", "127.0.0.1"}}
		res, err := WriteExternalDir(ctx, ca, st, d, now)
		if err != nil {
			t.Fatal(err)
		}
		if !res.NewCert || len(res.Users) != 2 {
			t.Fatalf("first write: %+v", res)
		}
		opts, err := server.ProcessConfigFile(filepath.Join(out, ExternalConfigFile))
		if err != nil {
			t.Fatalf("routes %v: nats-server does not read the configuration: %v", routes, err)
		}
		if opts.ServerName != "nats-1" || opts.Port != 4222 || !opts.TLSMap || opts.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert ||
			!opts.TLSHandshakeFirst || !opts.JetStream || opts.TLSConfig.MinVersion != tls.VersionTLS13 ||
			!slices.Equal(opts.TLSConfig.CurvePreferences, []tls.CurveID{tls.CurveP384}) {
			t.Errorf("routes %v: server %s port %d, TLS map %v, client auth %v, handshake first %v, JetStream %v, TLS min %x, curves %v",
				routes, opts.ServerName, opts.Port, opts.TLSMap, opts.TLSConfig.ClientAuth, opts.TLSHandshakeFirst, opts.JetStream,
				opts.TLSConfig.MinVersion, opts.TLSConfig.CurvePreferences)
		}
		if len(opts.Users) != 2 || opts.Users[0].Username != ManagementUser || opts.Users[0].Permissions != nil {
			t.Fatalf("routes %v: users %+v (the removed node must have none)", routes, opts.Users)
		}
		want := NodePermissions("paris-1")
		got := opts.Users[1]
		if got.Username != nodeca.EnrolmentURI(rec) || !slices.Equal(got.Permissions.Publish.Allow, want.Publish.Allow) ||
			!slices.Equal(got.Permissions.Subscribe.Allow, want.Subscribe.Allow) {
			t.Errorf("routes %v: node user %s %+v %+v, want %+v %+v", routes, got.Username, got.Permissions.Publish, got.Permissions.Subscribe, want.Publish, want.Subscribe)
		}
		if routes != nil && (len(opts.Routes) != 2 || opts.Cluster.Name != "conclave" || !opts.Cluster.TLSMap ||
			opts.Cluster.Username != nodeca.URIPrefix+"bus:conclave" || opts.Cluster.Port != 6222) {
			t.Errorf("routes %v: cluster %+v, routes %v", routes, opts.Cluster, opts.Routes)
		}
		if res, err := WriteExternalDir(ctx, ca, st, d, now); err != nil || res.NewCert {
			t.Errorf("written again: %+v %v, want the certificate kept", res, err)
		}
		d.Hosts = []string{"nats-1.example.org"}
		if res, err := WriteExternalDir(ctx, ca, st, d, now); err != nil || !res.NewCert {
			t.Errorf("other hosts: %+v %v, want a new certificate", res, err)
		}
		if res, err := WriteExternalDir(ctx, ca, st, d, now.Add(61*24*time.Hour)); err != nil || !res.NewCert {
			t.Errorf("30 days before expiry: %+v %v, want a new certificate", res, err)
		}
	}
	if _, err := WriteExternalDir(ctx, ca, st, ExternalDir{Dir: t.TempDir(), UsersOnly: true}, now); err == nil {
		t.Error("users only, without a configuration: no error")
	}
}

// TestCheckExternal: the management node's check of an external NATS
// server at start says what is missing when JetStream is.
func TestCheckExternal(t *testing.T) {
	for _, js := range []bool{false, true} {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: js,
			StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("NATS server not ready")
		}
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		err = CheckExternal(context.Background(), nc, ns.ClientURL(), time.Now(), func(string, ...any) {})
		if js && err != nil || !js && (err == nil || !strings.Contains(err.Error(), "no JetStream")) {
			t.Errorf("JetStream %v: %v", js, err)
		}
		nc.Close()
		ns.Shutdown()
	}
}
