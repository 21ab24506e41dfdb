package e2e

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"conclave/internal/cascade"
	"conclave/internal/nodeca"
	"conclave/internal/store"
	"conclave/internal/testutil/tlsscan"
)

// TestTLSScanCluster: testssl.sh on the management node's cluster
// listener (node enrolment and certificate renewal) finds TLS 1.3 only,
// the one suite TLS_AES_256_GCM_SHA384, the one group P-384, and nothing
// above LOW; a client with a certificate the cluster CA did not issue is
// refused (docs/cluster.md, "Trust between nodes").
func TestTLSScanCluster(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := nodeca.Open(filepath.Join(dir, "cluster"), "Example", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := nodeca.Listen(ca, "127.0.0.1:0", []string{"127.0.0.1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	// A node certificate from another cluster is refused.
	other, err := nodeca.Open(filepath.Join(dir, "other"), "Other", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherLn, err := nodeca.Listen(other, "127.0.0.1:0", []string{"127.0.0.1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otherLn.Close() })
	tok, err := other.NewToken(context.Background(), "intruder", nodeca.RoleConference, "", "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	intruder, err := nodeca.Enrol(context.Background(), t.TempDir(), otherLn.Addr().String(), tok, other.Fingerprint(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), nodeca.ClientConfig(intruder.Certificate, nodeca.Trust{Roots: ca.Pool()}, "127.0.0.1"))
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a node of another cluster: %v, want a refused certificate", err)
	}

	// The node-to-node listener of meetings across nodes (cascade), which
	// asks every client for a node certificate: the same policy, and the
	// other cluster's node refused.
	mesh, err := cascade.Listen(cascade.Config{Name: "management", Listen: "127.0.0.1:0", Cert: ln.Certificate,
		Trust: nodeca.Trust{Roots: ca.Pool(), Revoked: ca.Revoked}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mesh.Close() })
	conn, err = tls.Dial("tcp", mesh.Addr().String(), nodeca.ClientConfig(intruder.Certificate, nodeca.Trust{Roots: ca.Pool()}, "127.0.0.1"))
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a node of another cluster on the node-to-node listener: %v, want a refused certificate", err)
	}

	// The two scans run side by side (testssl waits on its handshakes
	// more than it computes).
	for _, l := range []struct{ name, addr string }{
		{"cluster listener", ln.Addr().String()}, {"node-to-node listener", mesh.Addr().String()},
	} {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			checkNodeTLS(t, l.name, tlsscan.Scan(t, l.addr, caFile))
		})
	}
}

// checkNodeTLS checks a testssl report of a node-to-node listener.
func checkNodeTLS(t *testing.T, what string, r tlsscan.Report) {
	t.Helper()
	t.Logf("testssl summary of the %s:\n%s", what, r.Summary())
	for _, f := range r.AboveLow() {
		t.Errorf("testssl: %s %s: %s", f.Severity, f.ID, f.Finding)
	}
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"} {
		if f, ok := r.Get(id); !ok || !strings.Contains(f.Finding, "not offered") {
			t.Errorf("%s: %+v, want not offered", id, f)
		}
	}
	if f, ok := r.Get("TLS1_3"); !ok || !strings.HasPrefix(f.Finding, "offered") {
		t.Errorf("TLS1_3: %+v, want offered", f)
	}
	var suites []string
	for _, f := range r.Findings {
		if strings.HasPrefix(f.ID, "cipher-tls1_3_") || strings.HasPrefix(f.ID, "cipher_x") {
			suites = append(suites, f.Finding)
		}
	}
	if len(suites) == 0 || slices.ContainsFunc(suites, func(s string) bool { return !strings.Contains(s, "TLS_AES_256_GCM_SHA384") }) {
		t.Errorf("cipher suites offered: %q, want TLS_AES_256_GCM_SHA384 only", suites)
	}
	curves := ""
	for _, line := range strings.Split(r.Text, "\n") {
		if strings.Contains(line, "Elliptic curves offered:") {
			curves = strings.Join(strings.Fields(strings.SplitN(line, ":", 2)[1]), " ")
		}
	}
	if curves != "secp384r1" {
		t.Errorf("elliptic curves offered: %q, want secp384r1 only", curves)
	}
}
