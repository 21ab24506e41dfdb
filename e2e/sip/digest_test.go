package sip_test

import (
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/sipedge"
)

// TestBaresipRegistersWithItsDigestSecretAsASecondFactor: with --sip-digest
// (MD5: baresip 1.0 knows no other) a phone needs its certificate and its digest secret; the certificate
// with a wrong secret is refused and audited.
func TestBaresipRegistersWithItsDigestSecretAsASecondFactor(t *testing.T) {
	srv := startSIPServerOpts(t, nil, func(c *config.Config) { c.SIPDigest = "md5" }, "alice")
	cert, res := enrolDevice(t, srv, "alice")
	if !res.DigestRequired || len(res.DigestPassword) < 20 {
		t.Fatalf("the enrolment does not hand out a digest secret: %+v", res)
	}
	good := startPhone(t, phoneConfig{name: "alice", aor: "sip:alice@" + domain, proxy: srv.SIPAddr().String(),
		certPEM: cert, caPEM: []byte(res.CA), toneHz: 440, mediaEnc: "dtls_srtp", authPass: res.DigestPassword})
	good.waitEvent(20*time.Second, "REGISTER_OK")
	bad := startPhone(t, phoneConfig{name: "alice-wrong-secret", aor: "sip:alice@" + domain, proxy: srv.SIPAddr().String(),
		certPEM: cert, caPEM: []byte(res.CA), toneHz: 440, mediaEnc: "dtls_srtp", authPass: "not-the-secret"})
	bad.waitEvent(20*time.Second, "REGISTER_FAIL")
	if recs := auditOf(t, srv, sipedge.ActionDigestFailed, 1); len(recs) == 0 || recs[0].Actor != "alice" {
		t.Fatalf("audit of the wrong secret: %+v", recs)
	}
}
