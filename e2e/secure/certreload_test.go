package secure

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/client"
	"conclave/internal/perm"
	"conclave/internal/pki"
	"conclave/internal/server"
)

// TestCertificateHotReload: a CSR made through the API, signed by the
// organisation's CA and imported back, is served at once: new
// connections see it (and verify against the organisation's CA), while a
// meeting in progress — its signaling over the old TLS connection, its
// media — goes on decoding without a reconnection.
func TestCertificateHotReload(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "board")
	orgKey, name := srv.org(t)
	video := func() client.FrameSource { return &repeatSource{frame: tinyKeyFrame(), codec: client.CodecVP8} }
	alice := join(t, srv, "board", "Alice", joinOpts{video: video(), id: srv.issue(t, "alice"), orgKey: orgKey, orgName: name})
	bob := join(t, srv, "board", "Bob", joinOpts{video: video(), id: srv.issue(t, "bob"), orgKey: orgKey, orgName: name})
	waitDecrypted(t, bob, alice, 10)
	aliceID, bobID := alice.Self().ID, bob.Self().ID

	// The organisation's CA.
	caKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Example Org Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	// An administrator makes the request and imports the answer.
	if _, err := srv.Lifecycle().Create(context.Background(), auth.CLIActor(), auth.NewAccount{Username: "root",
		Password: "Correct-Horse-42", KeepPassword: true, Roles: []string{perm.Administrator}}); err != nil {
		t.Fatal(err)
	}
	hc := srv.httpClient()
	csrf := ""
	call := func(method, path string, body any) map[string]any {
		t.Helper()
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, srv.URL()+path, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", csrf)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
		}
		return out
	}
	login := call("POST", "/api/login", map[string]string{"username": "root", "password": "Correct-Horse-42"})
	csrf, _ = login["csrf"].(string)
	call("POST", "/api/certificates/trusted", map[string]string{"name": "org", "pem": string(caPEM)})
	csr := call("POST", "/api/certificates/csr", map[string]any{"keyType": "ecdsa-p256", "names": []string{"127.0.0.1", "localhost"}, "organization": "Example Org"})
	req, err := pki.ParseCSR([]byte(csr["csr"].(string)))
	if err != nil || req.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: req.Subject, DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(200 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, req.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	imported := call("POST", "/api/certificates/import", map[string]string{"chain": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}))})

	// New connections get the new certificate, which the organisation's CA
	// verifies.
	orgRoots := x509.NewCertPool()
	orgRoots.AddCert(ca)
	host := srv.URL()[len("https://"):]
	conn, err := tls.Dial("tcp", host, pki.ClientTLSConfig(orgRoots))
	if err != nil {
		t.Fatalf("a new connection does not verify against the organisation's CA: %v", err)
	}
	got := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if pki.Fingerprint(got) != imported["fingerprint"] {
		t.Fatalf("new connections see %s, want the imported %v", pki.Fingerprint(got), imported["fingerprint"])
	}

	// The meeting goes on: the same participants, frames still decrypted.
	waitDecrypted(t, bob, alice, 30)
	waitDecrypted(t, alice, bob, 30)
	if alice.Self().ID != aliceID || bob.Self().ID != bobID {
		t.Fatalf("the members reconnected: %s %s, were %s %s", alice.Self().ID, bob.Self().ID, aliceID, bobID)
	}
}
