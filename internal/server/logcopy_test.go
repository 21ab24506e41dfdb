package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/store"
	"conclave/internal/testutil/wait"
)

// TestNodeLogCopy: a conference node keeps a verified copy of the E2EE
// transparency log; with the management node stopped (and after the
// node restarts without it) the node answers checkpoint, prove and
// entries from it, byte for byte as the management node last did, and
// the native client's log monitor verifies those answers. A management
// node that comes back with a rewritten log (a record changed in its
// database) is refused: the node serves the log it verified, not that
// one.
func TestNodeLogCopy(t *testing.T) {
	ctx := context.Background()
	busPort := freePort(t)
	mgmtDir := t.TempDir()
	mgmt := clusterMgmt(t, mgmtDir, busPort)
	defer func() { mgmt.Close() }()
	auth := mgmt.Authority()
	ann := store.User{ID: 41, Username: "ann", DisplayName: "Ann"}
	certify := func() []byte {
		t.Helper()
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := e2ee.MarshalPublicKey(&k.PublicKey)
		cred, _, err := auth.Certify(ctx, ann, pub)
		if err != nil {
			t.Fatal(err)
		}
		return cred
	}
	creds := [][]byte{certify(), certify(), certify()}

	nodeDir := enrolNode(t, mgmt, "paris-1")
	busURL := "tls://127.0.0.1:" + strconv.Itoa(busPort)
	node := startNode(t, nodeDir, busURL)
	caughtUp := func(what string) {
		t.Helper()
		wait.For(t, what, 20*time.Second, func() bool { size, ready, _ := node.LogCopy(); return ready && size == auth.Size() })
	}
	caughtUp("the node's copy of the log")
	creds = append(creds, certify())
	caughtUp("the node's copy to follow the log")

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	do := func(base, method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	h := e2ee.RecordHash(creds[1])
	requests := [][3]string{
		{"GET", "/api/e2ee/log/checkpoint", ""},
		{"POST", "/api/e2ee/log/prove", `{"from":2,"to":0,"records":["` + base64.StdEncoding.EncodeToString(h[:]) + `"]}`},
		{"POST", "/api/e2ee/log/prove", `{"from":1,"to":3,"records":[]}`},
		{"GET", "/api/e2ee/log/entries?start=1&size=4", ""},
		{"GET", "/api/e2ee/log/entries?start=0&size=9", ""},
	}
	var fromMgmt []string
	for _, r := range requests {
		st, body := do(mgmt.URL(), r[0], r[1], r[2])
		if st2, viaNode := do(node.URL(), r[0], r[1], r[2]); st2 != st || viaNode != body {
			t.Fatalf("%s %s through the node: %d %s; management: %d %s", r[0], r[1], st2, viaNode, st, body)
		}
		fromMgmt = append(fromMgmt, strconv.Itoa(st)+" "+body)
	}
	orgKey, err := e2ee.ParsePublicKey(auth.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	monitor := func() *secure.LogMonitor {
		t.Helper()
		m, err := secure.NewLogMonitor(secure.LogMonitorConfig{API: secure.HTTPLog{Client: hc, Base: node.URL()},
			VerifierKey: auth.LogVerifierKey(), OrgKey: orgKey, OrgID: auth.OrgID()})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := monitor()
	if err := before.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	if err := mgmt.Close(); err != nil {
		t.Fatal(err)
	}
	sameAnswers := func(base, when string) {
		t.Helper()
		for i, r := range requests {
			if st, body := do(base, r[0], r[1], r[2]); strconv.Itoa(st)+" "+body != fromMgmt[i] {
				t.Errorf("%s, %s %s: %d %s; management answered %s", when, r[0], r[1], st, body, fromMgmt[i])
			}
		}
	}
	verified := func(m *secure.LogMonitor, when string) {
		t.Helper()
		if err := m.Refresh(ctx); err != nil {
			t.Fatalf("%s: the native client's refresh: %v", when, err)
		}
		if cp := m.Checkpoint(); cp.Size != int64(len(creds)) {
			t.Fatalf("%s: the client's checkpoint has %d records", when, cp.Size)
		}
		for i, c := range creds {
			if !m.Status(c).Logged {
				t.Errorf("%s: credential %d is not logged for the client", when, i)
			}
		}
	}
	sameAnswers(node.URL(), "management stopped")
	verified(before, "management stopped, a client that followed the log")
	verified(monitor(), "management stopped, a new client")

	// A node restarted while the management node is down has its copy.
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	node = startNode(t, nodeDir, busURL)
	sameAnswers(node.URL(), "node restarted")
	restarted := monitor()
	verified(restarted, "node restarted, a new client")

	// The management node's log is rewritten while it is down.
	db, err := sql.Open("sqlite", filepath.Join(mgmtDir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE e2ee_log SET record = ? WHERE idx = 2`, creds[1]); err != nil {
		t.Fatal(err)
	}
	db.Close()
	mgmt = clusterMgmt(t, mgmtDir, busPort)
	wait.For(t, "the node to refuse the rewritten log", 20*time.Second, func() bool { _, _, refused := node.LogCopy(); return refused })
	if _, rewritten := do(mgmt.URL(), "GET", "/api/e2ee/log/checkpoint", ""); "200 "+rewritten == fromMgmt[0] {
		t.Fatal("the management node's log was not rewritten")
	}
	sameAnswers(node.URL(), "management back with a rewritten log")
	verified(restarted, "management back with a rewritten log, a client of the node")
	// Closed before the management node (a node closes in 5 s without it).
	node.Close()
}
