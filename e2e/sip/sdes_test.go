package sip_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"conclave/internal/sipedge"
)

// TestPlainRTPAndSDESAreRefusedByDefault: a phone offering plain RTP, or
// SDES-SRTP (whose keys the server would read), is refused with 488 and
// the refusal audited, unless the administrator allows SDES.
func TestPlainRTPAndSDESAreRefusedByDefault(t *testing.T) {
	srv := startSIPServer(t, nil, false, "alice", "bob")
	proxy := srv.SIPAddr().String()
	bobCert, bobEnrol := enrolDevice(t, srv, "bob")
	bob := startPhone(t, phoneConfig{name: "bob", aor: "sip:bob@" + domain, proxy: proxy, certPEM: bobCert,
		caPEM: []byte(bobEnrol.CA), toneHz: 1000, mediaEnc: "dtls_srtp"})
	bob.waitEvent(20*time.Second, "REGISTER_OK")
	for i, enc := range []string{"", "srtp-mand"} {
		cert, res := enrolDevice(t, srv, "alice")
		alice := startPhone(t, phoneConfig{name: "alice-" + enc, aor: "sip:alice@" + domain, proxy: proxy, certPEM: cert,
			caPEM: []byte(res.CA), toneHz: 440, mediaEnc: enc})
		alice.waitEvent(20*time.Second, "REGISTER_OK")
		alice.command("dial", "sip:bob@"+domain)
		ev := alice.waitEvent(20*time.Second, "CALL_CLOSED", "CALL_ESTABLISHED")
		if ev["type"] != "CALL_CLOSED" || !strings.Contains(ev["param"].(string), "488") {
			t.Fatalf("media encryption %q: %v", enc, ev)
		}
		recs := auditOf(t, srv, sipedge.ActionCallRefused, i+1)
		if len(recs) != i+1 {
			t.Fatalf("refusals audited: %+v", recs)
		}
		want := map[string]string{"": "plain RTP is not allowed", "srtp-mand": "SDES-SRTP is disabled"}[enc]
		if r := recs[i].Details["reason"]; !strings.Contains(r, want) {
			t.Errorf("media encryption %q refused for %q", enc, r)
		}
	}
}

// TestSDESCallWhenAllowedIsMarkedNotEndToEnd: with SDES allowed, the call
// goes through and its record says it was not end-to-end.
func TestSDESCallWhenAllowedIsMarkedNotEndToEnd(t *testing.T) {
	tap := newRelayTap(100)
	srv := startSIPServer(t, tap.tap, true, "alice", "bob")
	proxy := srv.SIPAddr().String()
	aliceCert, aliceEnrol := enrolDevice(t, srv, "alice")
	bobCert, bobEnrol := enrolDevice(t, srv, "bob")
	alice := startPhone(t, phoneConfig{name: "alice", aor: "sip:alice@" + domain, proxy: proxy, certPEM: aliceCert,
		caPEM: []byte(aliceEnrol.CA), toneHz: 440, mediaEnc: "srtp-mand"})
	bob := startPhone(t, phoneConfig{name: "bob", aor: "sip:bob@" + domain, proxy: proxy, certPEM: bobCert,
		caPEM: []byte(bobEnrol.CA), toneHz: 1000, mediaEnc: "srtp-mand"})
	alice.waitEvent(20*time.Second, "REGISTER_OK")
	bob.waitEvent(20*time.Second, "REGISTER_OK")
	alice.command("dial", "sip:bob@"+domain)
	alice.waitEvent(30*time.Second, "CALL_ESTABLISHED")
	select {
	case <-tap.enough:
	case <-time.After(30 * time.Second):
		t.Fatalf("the relay forwarded %d and %d RTP packets", tap.n[0].Load(), tap.n[1].Load())
	}
	alice.command("hangup", "")
	bob.waitEvent(20*time.Second, "CALL_CLOSED")
	checkHears(t, bob, 440)
	recs, err := srv.SIP().CallRecords(context.Background(), 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("call records: %+v %v", recs, err)
	}
	if r := recs[0]; r.Media != sipedge.ModeSDES || r.EndToEnd || r.CallerFingerprint != "" {
		t.Errorf("an SDES call's record: %+v", r)
	}
	// The administrator's page marks it, and lists both devices.
	page := telephonyPage(t, srv, "root", "administrator")
	pageShows(t, page, "calls", "sdes-srtp — not end-to-end")
	pageShows(t, page, "sdes-note", "not end-to-end")
	pageShows(t, page, "devices", bobEnrol.Serial)
	pageShows(t, page, "devices", aliceEnrol.Serial)
}
