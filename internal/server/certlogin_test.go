package server_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"conclave/internal/config"
	"conclave/internal/perm"
	"conclave/internal/testutil/testca"
	"conclave/internal/testutil/testserver"
)

// certClient is an API client presenting leaf as its TLS client
// certificate.
func certClient(t *testing.T, srv *testserver.Server, leaf *testca.Leaf) *apiClient {
	jar, _ := cookiejar.New(nil)
	tc := &tls.Config{InsecureSkipVerify: true}
	if leaf != nil {
		tc.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}}
	}
	return &apiClient{t: t, base: srv.URL(), hc: &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: tc}}}
}

func certLogin(t *testing.T, srv *testserver.Server, leaf *testca.Leaf) (int, map[string]any, *apiClient) {
	c := certClient(t, srv, leaf)
	st, body, _ := c.do("POST", "/api/login/certificate", nil, false)
	c.csrf, _ = body["csrf"].(string)
	return st, body, c
}

// TestCertificateLogin: administrators sign in with a client certificate
// from the configured CA; the identity comes from the subject CN or the
// SAN UPN; an expired, revoked (CRL) or foreign certificate is refused
// with a sentence; and when certificate login is required, an
// administrator's password alone is refused while meeting users still sign
// in with theirs.
func TestCertificateLogin(t *testing.T) {
	ca := testca.New(t, "Admin CA")
	tmp := t.TempDir()
	revoked := ca.Issue(t, testca.Options{CN: "root"})
	crl := testca.WriteFile(t, tmp, "admins.crl", ca.CRL(t, time.Now().Add(24*time.Hour), revoked.Cert))
	caFile := testca.WriteFile(t, tmp, "admin-ca.pem", ca.PEM())
	start := func(required bool) *testserver.Server {
		srv := openServerWith(t, func(c *config.Config) {
			c.Auth.CertCA, c.Auth.CertCRL, c.Auth.CertRequired = caFile, crl, required
		})
		addAccount(t, srv, "root", perm.Administrator)
		addAccount(t, srv, "alice", perm.Auditor)
		addAccount(t, srv, "member")
		return srv
	}
	srv := start(false)

	good := ca.Issue(t, testca.Options{CN: "root"})
	st, body, c := certLogin(t, srv, &good)
	if st != http.StatusOK || body["user"].(map[string]any)["username"] != "root" {
		t.Fatalf("a good certificate (CN root): %d %v", st, body)
	}
	if st, _, _ := c.do("GET", "/api/users", nil, false); st != http.StatusOK {
		t.Fatalf("the certificate's session lists accounts: %d", st)
	}
	upn := ca.Issue(t, testca.Options{CN: "Alice Liddell", UPN: "alice@corp.example"})
	if st, body, _ := certLogin(t, srv, &upn); st != http.StatusOK || body["user"].(map[string]any)["username"] != "alice" {
		t.Fatalf("a certificate with a UPN: %d %v", st, body)
	}

	expired := ca.Issue(t, testca.Options{CN: "root", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	refused := []struct {
		what, msg string
		leaf      *testca.Leaf
	}{
		{"expired", "expired", &expired},
		{"revoked", "revoked", &revoked},
		// The server names the CA it accepts; clients (browsers too) then
		// offer no certificate of another.
		{"from another CA", "no client certificate", ptr(testca.New(t, "Other CA").Issue(t, testca.Options{CN: "root"}))},
		{"naming a meeting user", "enabled administrator account", ptr(ca.Issue(t, testca.Options{CN: "member"}))},
		{"absent", "no client certificate", nil},
	}
	for _, r := range refused {
		st, body, _ := certLogin(t, srv, r.leaf)
		if st != http.StatusUnauthorized || errCode(body) != "bad-certificate" || !strings.Contains(strings.ToLower(errMessage(body)), r.msg) {
			t.Errorf("a certificate %s: %d %v", r.what, st, body)
		}
	}
	if !auditHas(t, srv, "login-failed", "revoked") {
		t.Error("the refused revoked certificate is not in the audit log")
	}

	// Requiring the certificate.
	srv = start(true)
	if st, body, _ := loginStatus(t, srv, "root", testPassword); st != http.StatusForbidden || errCode(body) != "certificate-required" {
		t.Fatalf("an administrator's password alone: %d %v", st, body)
	}
	if st, body, _ := loginStatus(t, srv, "member", testPassword); st != http.StatusOK {
		t.Fatalf("a meeting user's password: %d %v", st, body)
	}
	st, body, c = certLogin(t, srv, &good)
	if st != http.StatusOK {
		t.Fatalf("the certificate when it is required: %d %v", st, body)
	}
	st, body, _ = c.do("GET", "/api/login/methods", nil, false)
	if body["certificate"] != true || body["certificateRequired"] != true {
		t.Fatalf("login methods: %v", body)
	}
}

func ptr[T any](v T) *T { return &v }

// TestCertificateOCSP: with OCSP on, the responder the certificate names
// is asked; "good" signs in, "revoked" and an unreachable responder are
// refused.
func TestCertificateOCSP(t *testing.T) {
	ca := testca.New(t, "Admin CA")
	revokedSerials := map[string]bool{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	responder := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute),
			NextUpdate: time.Now().Add(time.Hour)}
		if revokedSerials[req.SerialNumber.String()] {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, time.Now().Add(-time.Hour), ocsp.KeyCompromise
		}
		resp, err := ocsp.CreateResponse(ca.Cert, ca.Cert, tmpl, ca.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		io.Copy(w, bytes.NewReader(resp))
	})}
	go responder.Serve(l)
	t.Cleanup(func() { responder.Close() })
	url := "http://" + l.Addr().String()

	caFile := testca.WriteFile(t, t.TempDir(), "ca.pem", ca.PEM())
	srv := openServerWith(t, func(c *config.Config) {
		c.Auth.CertCA, c.Auth.CertOCSP = caFile, true
	})
	addAccount(t, srv, "root", perm.Administrator)

	good := ca.Issue(t, testca.Options{CN: "root", OCSP: url})
	if st, body, _ := certLogin(t, srv, &good); st != http.StatusOK {
		t.Fatalf("OCSP good: %d %v", st, body)
	}
	bad := ca.Issue(t, testca.Options{CN: "root", OCSP: url})
	revokedSerials[bad.Cert.SerialNumber.String()] = true
	if st, body, _ := certLogin(t, srv, &bad); st != http.StatusUnauthorized || !strings.Contains(errMessage(body), "revoked") {
		t.Fatalf("OCSP revoked: %d %v", st, body)
	}
	unreachable := ca.Issue(t, testca.Options{CN: "root", OCSP: "http://127.0.0.1:1/"})
	if st, body, _ := certLogin(t, srv, &unreachable); st != http.StatusUnauthorized || !strings.Contains(errMessage(body), "cannot be reached") {
		t.Fatalf("OCSP responder unreachable: %d %v", st, body)
	}
}
