package sipedge

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const dtlsOffer = "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" +
	"m=audio 4000 UDP/TLS/RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
	"a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=candidate:1 1 UDP 1 192.0.2.10 4000 typ host\r\n"

const sdesOffer = "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"

const plainOffer = "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

func TestMediaPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sdp       string
		allowSDES bool
		mode      Mode
		err       error
	}{
		{"DTLS-SRTP", dtlsOffer, false, ModeDTLS, nil},
		{"SDES refused by default", sdesOffer, false, "", ErrSDESDisabled},
		{"SDES when allowed", sdesOffer, true, ModeSDES, nil},
		{"plain RTP", plainOffer, false, "", ErrPlainRTP},
		{"plain RTP even with SDES allowed", plainOffer, true, "", ErrPlainRTP},
		{"DTLS protocol without a fingerprint", strings.Replace(dtlsOffer, "a=fingerprint:sha-256 AA:BB\r\n", "", 1), false, "", ErrPlainRTP},
		{"no media", "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\n", false, "", ErrNoMedia},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Inspect([]byte(tc.sdp), tc.allowSDES)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || d.Mode != tc.mode {
				t.Fatalf("mode %v, err %v", d, err)
			}
			if d.Mode.EndToEnd() != (tc.mode == ModeDTLS) {
				t.Error("only DTLS-SRTP is end-to-end")
			}
		})
	}
}

func TestRewritePointsMediaAtTheRelayAndKeepsTheFingerprint(t *testing.T) {
	d, err := Inspect([]byte(dtlsOffer), false)
	if err != nil {
		t.Fatal(err)
	}
	if d.Media[0].Addr != netip.MustParseAddrPort("192.0.2.10:4000") || d.Media[0].Fingerprint != "sha-256 AA:BB" {
		t.Fatalf("media %+v", d.Media[0])
	}
	if strings.Join(d.Media[0].Codecs, ",") != "PCMU,telephone-event" {
		t.Errorf("codecs %v", d.Media[0].Codecs)
	}
	out, err := d.Rewrite(netip.MustParseAddr("198.51.100.1"), []int{30000}, []int{30001})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"c=IN IP4 198.51.100.1", "m=audio 30000 UDP/TLS/RTP/SAVP", "a=rtcp:30001 IN IP4 198.51.100.1", "a=fingerprint:sha-256 AA:BB", "a=setup:actpass"} {
		if !strings.Contains(s, want) {
			t.Errorf("rewritten SDP lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "192.0.2.10") || strings.Contains(s, "candidate") {
		t.Errorf("rewritten SDP still points at the endpoint:\n%s", s)
	}
}

func TestSDESKeysAreDroppedFromADTLSOfferWhenSDESIsOff(t *testing.T) {
	both := strings.Replace(dtlsOffer, "a=setup:actpass\r\n", "a=setup:actpass\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", 1)
	d, err := Inspect([]byte(both), false)
	if err != nil || d.Mode != ModeDTLS {
		t.Fatalf("%v %v", d, err)
	}
	out, _ := d.Rewrite(netip.MustParseAddr("198.51.100.1"), []int{30000}, []int{30001})
	if strings.Contains(string(out), "crypto") {
		t.Fatalf("the SDES key was forwarded:\n%s", out)
	}
}
