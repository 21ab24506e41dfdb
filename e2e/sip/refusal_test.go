package sip_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/devca"
	"conclave/internal/pki"
	"conclave/internal/sipedge"
	"conclave/internal/store"
	"conclave/internal/testutil/testserver"
)

// auditOf waits for n audit records of action (the edge audits a refused
// handshake after the client has seen it).
func auditOf(t *testing.T, srv *testserver.Server, action string, n int) []store.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := srv.AuditEvents(context.Background(), action)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(20 * time.Millisecond) // polling the store: it has no change feed
	}
}

func TestBaresipWithARevokedCertificateIsRefused(t *testing.T) {
	srv := startSIPServer(t, nil, false, "alice")
	cert, res := enrolDevice(t, srv, "alice")
	alice := startPhone(t, phoneConfig{name: "alice", aor: "sip:alice@" + domain, proxy: srv.SIPAddr().String(),
		certPEM: cert, caPEM: []byte(res.CA), toneHz: 440, mediaEnc: "dtls_srtp"})
	alice.waitEvent(20*time.Second, "REGISTER_OK")
	if !srv.SIP().Online("sip:alice@" + domain) {
		t.Fatal("alice is not registered")
	}
	if _, err := srv.DeviceCA().Revoke(context.Background(), res.Serial, devca.ReasonKeyCompromise, "admin", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if srv.SIP().Online("sip:alice@" + domain) {
		t.Fatal("the revoked device is still registered")
	}
	// The phone is started again and registers over a new connection:
	// refused at the handshake (baresip itself reports the failure only
	// when its transaction times out, 32 s later; the audit shows it).
	alice.cmd.Process.Kill()
	startPhone(t, phoneConfig{name: "alice-again", aor: "sip:alice@" + domain, proxy: srv.SIPAddr().String(),
		certPEM: cert, caPEM: []byte(res.CA), toneHz: 440, mediaEnc: "dtls_srtp"})
	recs := auditOf(t, srv, sipedge.ActionTLSRefused, 1)
	if len(recs) == 0 || !strings.Contains(recs[0].Details["reason"], "revoked") {
		t.Fatalf("audit of the refused handshake: %+v", recs)
	}
	if srv.SIP().Online("sip:alice@" + domain) {
		t.Fatal("a revoked certificate registered")
	}
}

func TestBaresipWithAnotherCAsCertificateIsRefused(t *testing.T) {
	srv := startSIPServer(t, nil, false, "alice")
	other := startSIPServer(t, nil, false, "alice")
	cert, _ := enrolDevice(t, other, "alice")
	_, ours := enrolDevice(t, srv, "alice") // the CA file is this server's
	startPhone(t, phoneConfig{name: "alice", aor: "sip:alice@" + domain, proxy: srv.SIPAddr().String(),
		certPEM: cert, caPEM: []byte(ours.CA), toneHz: 440, mediaEnc: "dtls_srtp"})
	recs := auditOf(t, srv, sipedge.ActionTLSRefused, 1)
	if len(recs) == 0 || !strings.Contains(recs[0].Details["reason"], "not issued by this organisation") {
		t.Fatalf("audit of the foreign certificate: %+v", recs)
	}
	if srv.SIP().Online("sip:alice@" + domain) {
		t.Fatal("a foreign certificate registered")
	}
}

func TestWrongEnrolmentTokenIsRefusedAndAudited(t *testing.T) {
	srv := startSIPServer(t, nil, false, "alice")
	key, _ := devca.GenerateKey("ecdsa-p256")
	csr, _ := devca.MakeCSR(key, "x")
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(srv.Roots)}}
	_, err := devca.RequestEnrol(context.Background(), hc, srv.URL(), "cdt_NOTATOKEN", csr)
	if err == nil || !strings.Contains(err.Error(), "token is unknown") {
		t.Fatalf("a wrong token: %v", err)
	}
	recs := auditOf(t, srv, devca.ActionEnrolFailed, 1)
	if len(recs) != 1 || recs[0].Source != "127.0.0.1" {
		t.Fatalf("audit of the wrong token: %+v", recs)
	}
	// A request for a key the policy refuses is a 400 with the reason.
	body, _ := json.Marshal(map[string]string{"token": "cdt_NOTATOKEN", "csr": "not a CSR"})
	req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/api/sip/enrol", bytes.NewReader(body))
	req.Header.Set("Origin", srv.URL())
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a malformed request: %s", resp.Status)
	}
}
