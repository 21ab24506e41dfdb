package sip_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/devca"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/sipedge"
	"conclave/internal/store"
	"conclave/internal/testutil/testserver"
)

const domain = "conclave.test"

// relayTap records what the SIP media relay forwards.
type relayTap struct {
	mu      sync.Mutex
	rtp     [2][][]byte // RTP datagrams per direction (first 400)
	dtls    [2]int      // DTLS records per direction
	n       [2]atomic.Int64
	enough  chan struct{}
	once    sync.Once
	wantRTP int64
}

func newRelayTap(want int64) *relayTap {
	return &relayTap{enough: make(chan struct{}), wantRTP: want}
}

func (r *relayTap) tap(dir sipedge.Direction, rtcp bool, pkt []byte) {
	if len(pkt) == 0 || rtcp {
		return
	}
	r.mu.Lock()
	switch b := pkt[0]; {
	case b >= 20 && b <= 63:
		r.dtls[dir]++
	case b >= 128 && b <= 191 && len(pkt) > 12 && (pkt[1]&0x7f) < 64:
		if len(r.rtp[dir]) < 400 {
			r.rtp[dir] = append(r.rtp[dir], append([]byte(nil), pkt...))
		}
		r.n[dir].Add(1)
	}
	r.mu.Unlock()
	if r.n[0].Load() >= r.wantRTP && r.n[1].Load() >= r.wantRTP {
		r.once.Do(func() { close(r.enough) })
	}
}

// enrolDevice runs the token and CSR flow over HTTPS for username and
// returns the PEM baresip loads (certificate and key, as `conclave device
// export` writes it from the encrypted key file).
func enrolDevice(t *testing.T, srv *testserver.Server, username string) ([]byte, devca.EnrolResponse) {
	t.Helper()
	ctx := context.Background()
	u, err := srv.Store().UserByName(ctx, username)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := srv.DeviceCA().CreateToken(ctx, u, "admin", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := devca.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := devca.MakeCSR(key, "phone")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(srv.Roots)}}
	res, err := devca.RequestEnrol(ctx, hc, srv.URL(), token, csr)
	if err != nil {
		t.Fatalf("enrol %s: %v", username, err)
	}
	pass := []byte("correct horse battery staple")
	enc, err := devca.EncryptKey(key, pass)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := devca.DecryptKey(enc, pass)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(dec)
	if err != nil {
		t.Fatal(err)
	}
	return exportPEM(t, []byte(res.Certificate), der), res
}

func startSIPServer(t *testing.T, tap sipedge.Tap, allowSDES bool, users ...string) *testserver.Server {
	t.Helper()
	return startSIPServerWith(t, tap, allowSDES, nil, users...)
}

func startSIPServerWith(t *testing.T, tap sipedge.Tap, allowSDES bool, allow []string, users ...string) *testserver.Server {
	t.Helper()
	return startSIPServerOpts(t, tap, func(c *config.Config) {
		c.SIPAllowSDES = allowSDES
		c.AllowList = allow
	}, users...)
}

func startSIPServerOpts(t *testing.T, tap sipedge.Tap, adjust func(*config.Config), users ...string) *testserver.Server {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{Server: server.Options{SIPTap: tap}, Config: func(c *config.Config) {
		c.SIPListen = "127.0.0.1:0"
		c.SIPDomain = domain
		c.SIPRelayIP = "127.0.0.1"
		adjust(c)
	}})
	for _, name := range users {
		if _, err := srv.Store().CreateUser(context.Background(), store.User{Username: name, DisplayName: name,
			Role: store.RoleUser, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

func TestCallBetweenTwoBaresipsIsEndToEndEncrypted(t *testing.T) {
	tap := newRelayTap(150)
	srv := startSIPServer(t, tap.tap, false, "alice", "bob")
	proxy := srv.SIPAddr().String()
	aliceCert, aliceEnrol := enrolDevice(t, srv, "alice")
	bobCert, bobEnrol := enrolDevice(t, srv, "bob")
	if aliceEnrol.AOR != "sip:alice@"+domain {
		t.Fatalf("alice's address of record is %q", aliceEnrol.AOR)
	}
	alice := startPhone(t, phoneConfig{name: "alice", aor: "sip:alice@" + domain, proxy: proxy, certPEM: aliceCert,
		caPEM: []byte(aliceEnrol.CA), toneHz: 440, mediaEnc: "dtls_srtp"})
	bob := startPhone(t, phoneConfig{name: "bob", aor: "sip:bob@" + domain, proxy: proxy, certPEM: bobCert,
		caPEM: []byte(bobEnrol.CA), toneHz: 1000, mediaEnc: "dtls_srtp"})
	alice.waitEvent(20*time.Second, "REGISTER_OK")
	bob.waitEvent(20*time.Second, "REGISTER_OK")

	alice.command("dial", "sip:bob@"+domain)
	alice.waitEvent(30*time.Second, "CALL_ESTABLISHED")
	bob.waitEvent(30*time.Second, "CALL_ESTABLISHED")
	select {
	case <-tap.enough:
	case <-time.After(30 * time.Second):
		t.Fatalf("the relay forwarded %d and %d RTP packets", tap.n[0].Load(), tap.n[1].Load())
	}
	alice.command("hangup", "")
	alice.waitEvent(20*time.Second, "CALL_CLOSED")
	bob.waitEvent(20*time.Second, "CALL_CLOSED")

	// Each side's sink holds the other side's tone.
	checkHears(t, bob, 440)
	checkHears(t, alice, 1000)

	// What the relay carried is SRTP: the same payloads read as PCMU
	// hold no trace of the tone the endpoints hear.
	tap.mu.Lock()
	for dir, hz := range []float64{440, 1000} {
		if tap.dtls[dir] == 0 {
			t.Errorf("direction %d: no DTLS handshake went through the relay", dir)
		}
		var pcm []int16
		for _, pkt := range tap.rtp[dir] {
			pcm = append(pcm, ulawPayload(pkt)...)
		}
		share, _ := toneEnergy(pcm, 8000, hz)
		t.Logf("direction %d: %d RTP packets tapped, %.4f of their energy at %.0f Hz if read as PCMU", dir, len(tap.rtp[dir]), share, hz)
		if share > 0.02 {
			t.Errorf("direction %d: the relayed payload carries the %.0f Hz tone (%.3f): it is not encrypted", dir, hz, share)
		}
	}
	tap.mu.Unlock()

	// The call detail record holds both fingerprints and says end-to-end.
	recs, err := srv.SIP().CallRecords(context.Background(), 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("call records: %+v, %v", recs, err)
	}
	r := recs[0]
	if r.From != "sip:alice@"+domain || r.To != "sip:bob@"+domain || r.Status != 200 || r.Media != sipedge.ModeDTLS || !r.EndToEnd {
		t.Errorf("call record %+v", r)
	}
	if !strings.HasPrefix(strings.ToLower(r.CallerFingerprint), "sha-256 ") || !strings.HasPrefix(strings.ToLower(r.CalleeFingerprint), "sha-256 ") ||
		r.CallerFingerprint == r.CalleeFingerprint {
		t.Errorf("fingerprints in the record: caller %q, callee %q", r.CallerFingerprint, r.CalleeFingerprint)
	}
	if r.Packets[0] == 0 || r.Packets[1] == 0 || r.Ended.IsZero() {
		t.Errorf("relay counts and end in the record: %+v", r)
	}

	// The auditor reads the record, fingerprints included, on the
	// telephony page; the devices are not theirs to see.
	page := telephonyPage(t, srv, "audrey", "auditor")
	pageShows(t, page, "calls", r.CallerFingerprint)
	pageShows(t, page, "calls", r.CalleeFingerprint)
	pageShows(t, page, "calls", "dtls-srtp (end-to-end)")
	var devicesShown bool
	if err := page.Eval(`!document.getElementById('admin-devices').hidden`, &devicesShown); err != nil || devicesShown {
		t.Errorf("the auditor sees the device list (%v)", err)
	}
}

// checkHears asserts that p's received-audio dump carries a tone at hz.
func checkHears(t *testing.T, p *phone, hz float64) {
	t.Helper()
	s, rate := wavSamples(t, p.receivedAudio())
	share, rms := toneEnergy(s, rate, hz)
	t.Logf("%s received %.1f s of audio, RMS %.0f, %.2f of its energy at %.0f Hz", p.name, float64(len(s))/float64(rate), rms, share, hz)
	if len(s) < rate || rms < 500 || share < 0.3 {
		t.Errorf("%s does not hear the %.0f Hz tone: %d samples, RMS %.0f, share %.3f", p.name, hz, len(s), rms, share)
	}
}

// ulawPayload decodes an RTP packet's payload as G.711 mu-law.
func ulawPayload(pkt []byte) []int16 {
	cc := int(pkt[0] & 0x0f)
	off := 12 + 4*cc
	if off > len(pkt) {
		return nil
	}
	out := make([]int16, 0, len(pkt)-off)
	for _, b := range pkt[off:] {
		u := ^b
		t := (int(u&0x0f) << 3) + 0x84
		t <<= (u & 0x70) >> 4
		if u&0x80 != 0 {
			out = append(out, int16(0x84-t))
		} else {
			out = append(out, int16(t-0x84))
		}
	}
	return out
}
