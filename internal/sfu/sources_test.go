package sfu

import (
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"conclave/internal/conn"
)

const offerAV = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"

// TestHardening06SourcesMatchKinds (docs/hardening.md, finding 6): a
// publish offer whose declared sources do not match its m-sections (a
// microphone declared as a camera, to escape a host's mute) or declare a
// source twice is refused.
func TestHardening06SourcesMatchKinds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources map[string]conn.Source
		want    string
	}{
		{"microphone and camera", map[string]conn.Source{"0": "microphone", "1": "camera"}, ""},
		{"microphone, camera and screen", map[string]conn.Source{"0": "microphone", "1": "camera", "2": "screen"}, ""},
		{"audio declared as camera", map[string]conn.Source{"0": "camera"}, "carries audio"},
		{"video declared as microphone", map[string]conn.Source{"1": "microphone"}, "carries video"},
		{"two cameras (a screen relabelled)", map[string]conn.Source{"1": "camera", "2": "camera"}, "both declared as camera"},
		{"a track not in the offer", map[string]conn.Source{"7": "camera"}, "not in the offer"},
	} {
		err := checkSources(mustParse(t, offerAV), tc.sources)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestOfferMediaSectionsBounded: an offer with more m-sections than a
// participant can use is refused (finding 4: tracks without end).
func TestOfferMediaSectionsBounded(t *testing.T) {
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	for i := 0; i <= maxMediaSections; i++ {
		offer += "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:" + string(rune('a'+i)) + "\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
	}
	if err := checkSources(mustParse(t, offer), map[string]conn.Source{"a": "camera"}); err == nil || !strings.Contains(err.Error(), "media sections") {
		t.Fatalf("an offer of %d m-sections: %v", maxMediaSections+1, err)
	}
}

func mustParse(t *testing.T, offer string) *sdp.SessionDescription {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		t.Fatal(err)
	}
	return &d
}
