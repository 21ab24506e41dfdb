package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/testutil/testserver"
)

// TestClusterEnrolment: the administrator makes a token on the management
// node, a node enrols with it and holds a P-384 certificate from the
// cluster CA; the token works once; the node shows in list-nodes; once
// removed, the running management node refuses its renewal.
func TestClusterEnrolment(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) { c.ClusterListen = "127.0.0.1:0" }})
	mgmt := srv.ClusterAddr().String()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	code, out := run("cluster", "add-node", "--data", srv.DataDir(), "-name", "paris-1", "-labels", "paris", "-management", mgmt)
	if code != 0 {
		t.Fatalf("add-node: %d %s", code, out)
	}
	m := regexp.MustCompile(`-token (\S+) -ca-pin (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("add-node printed no enrol command:\n%s", out)
	}
	if code, out := run("cluster", "add-node", "--data", srv.DataDir(), "-name", "Bad Name"); code == 0 || !strings.Contains(out, "not valid") {
		t.Errorf("a bad node name: %d %s", code, out)
	}
	nodeData := t.TempDir()
	code, out = run("node", "enrol", "--data", nodeData, "-management", mgmt, "-token", m[1], "-ca-pin", m[2], "-host", "127.0.0.1")
	if code != 0 || !strings.Contains(out, "Node paris-1 (conference)") {
		t.Fatalf("node enrol: %d %s", code, out)
	}
	if code, out := run("node", "enrol", "--data", t.TempDir(), "-management", mgmt, "-token", m[1], "-ca-pin", m[2]); code == 0 || !strings.Contains(out, "already used") {
		t.Errorf("second use of the token: %d %s", code, out)
	}
	if code, out := run("node", "renew", "--data", nodeData, "-management", mgmt); code != 0 {
		t.Errorf("renew: %d %s", code, out)
	}
	code, out = run("cluster", "list-nodes", "--data", srv.DataDir())
	if code != 0 || !regexp.MustCompile(`paris-1\s+conference\s+paris\s+\S+\s+[0-9a-f]+\s+\S+\s+member`).MatchString(out) {
		t.Errorf("list-nodes: %d\n%s", code, out)
	}
	if code, out := run("cluster", "remove-node", "--data", srv.DataDir(), "-name", "paris-1"); code != 0 {
		t.Fatalf("remove-node: %d %s", code, out)
	}
	// The server rereads revocations every 10 s; its CA is told at once
	// here, as it would be by the API.
	if err := srv.ClusterCA().RefreshRevoked(t.Context()); err != nil {
		t.Fatal(err)
	}
	if code, out := run("node", "renew", "--data", nodeData, "-management", mgmt); code == 0 {
		t.Errorf("a removed node renewed its certificate: %s", out)
	}
	if code, out := run("cluster", "remove-node", "--data", srv.DataDir(), "-name", "paris-1"); code == 0 || !strings.Contains(out, "no node called") {
		t.Errorf("second removal: %d %s", code, out)
	}
}
