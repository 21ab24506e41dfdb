package sipedge

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const opusOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 4000 UDP/TLS/RTP/SAVP 96 0 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\n" +
	"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n" +
	"a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=rtcp-mux\r\na=sendrecv\r\n" +
	"m=video 4002 UDP/TLS/RTP/SAVP 100\r\na=rtpmap:100 VP8/90000\r\na=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n"

func TestSplitDialIn(t *testing.T) {
	for _, c := range []struct{ user, alias, pin string }{
		{"board", "board", ""},
		{"Board*246810", "board", "246810"},
		{"board*", "board*", ""},
		{"*246810", "*246810", ""},
		{"a*b*123", "a*b", "123"},
		{"board*12a", "board*12a", ""},
		{"board*" + strings.Repeat("1", 33), "board*" + strings.Repeat("1", 33), ""},
	} {
		if a, p := splitDialIn(c.user); a != strings.ToLower(c.alias) || p != c.pin {
			t.Errorf("splitDialIn(%q) = %q, %q; want %q, %q", c.user, a, p, c.alias, c.pin)
		}
	}
}

// The answer to a telephone takes its Opus and telephone events, gives the
// edge's fingerprint and DTLS role, keeps rtcp-mux, and refuses video.
func TestDialInAnswer(t *testing.T) {
	d, err := Inspect([]byte(opusOffer), false)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := parseDialIn(d)
	if err != nil {
		t.Fatal(err)
	}
	if dm.opusPT != 96 || dm.dtmfPT != 101 || !dm.mux || dm.setup != "actpass" || dm.fingerprint != "sha-256 AA:BB" ||
		dm.addr != netip.MustParseAddrPort("127.0.0.1:4000") {
		t.Fatalf("parsed %+v", dm)
	}
	leg, err := newPhoneLeg(netip.MustParseAddr("127.0.0.1"), PortRange{}, netip.MustParseAddr("127.0.0.1"), dm.mux)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.close()
	leg.dtlsClient = true
	body, err := answerDialIn(d, dm, netip.MustParseAddr("127.0.0.1"), leg)
	if err != nil {
		t.Fatal(err)
	}
	ans := string(body)
	for _, want := range []string{"m=audio ", " UDP/TLS/RTP/SAVP 96 101\r\n", "a=rtpmap:96 opus/48000/2", "a=fmtp:96 stereo=1;sprop-stereo=1",
		"a=rtpmap:101 telephone-event/8000", "a=rtcp-mux", "a=setup:active", "a=fingerprint:" + leg.fingerprint, "m=video 0 "} {
		if !strings.Contains(ans, want) {
			t.Errorf("the answer lacks %q:\n%s", want, ans)
		}
	}
	if strings.Contains(ans, "PCMU") {
		t.Errorf("the answer keeps G.711:\n%s", ans)
	}
	if _, err := Inspect(body, false); err != nil {
		t.Errorf("the edge's own answer fails its media policy: %v", err)
	}
}

// A telephone that offers only G.711 is refused with a sentence that says
// why; so is SDES, and an offer without audio.
func TestDialInRefusals(t *testing.T) {
	g711, err := Inspect([]byte(dtlsOffer), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseDialIn(g711); !errors.Is(err, ErrG711Only) || !strings.Contains(err.Error(), "PCMU") {
		t.Errorf("a G.711-only offer: %v", err)
	}
	sdes, err := Inspect([]byte(sdesOffer), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseDialIn(sdes); err == nil || !strings.Contains(err.Error(), "DTLS-SRTP") {
		t.Errorf("an SDES offer: %v", err)
	}
	video, err := Inspect([]byte(strings.Replace(opusOffer, "m=audio 4000", "m=audio 0", 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseDialIn(video); err == nil || !strings.Contains(err.Error(), "no audio") {
		t.Errorf("an offer without audio: %v", err)
	}
}
