package sfu

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

// offerLines joins SDP lines with CRLF.
func offerLines(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }

const sessionHead = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"

// TestSendingMidsBundle: the JSEP rules for port zero, on small offers
// written by hand. The recorded browser offers are in TestBrowserOffers.
func TestSendingMidsBundle(t *testing.T) {
	cases := []struct {
		name string
		sdp  string
		want []string
	}{
		{"bundle-only after the first (Firefox, max-bundle)", sessionHead + offerLines(
			"a=group:BUNDLE 0 1",
			"m=audio 9 UDP/TLS/RTP/SAVPF 109", "a=mid:0", "a=sendonly",
			"m=video 0 UDP/TLS/RTP/SAVPF 120", "a=bundle-only", "a=mid:1", "a=sendonly"),
			[]string{"0", "1"}},
		{"port 9 everywhere (Chromium)", sessionHead + offerLines(
			"a=group:BUNDLE 0 1",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
			"m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=sendonly"),
			[]string{"0", "1"}},
		{"port zero without bundle-only is stopped", sessionHead + offerLines(
			"a=group:BUNDLE 0",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
			"m=video 0 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=sendonly"),
			[]string{"0"}},
		{"bundle-only outside every BUNDLE group is not live", sessionHead + offerLines(
			"a=group:BUNDLE 0",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
			"m=video 0 UDP/TLS/RTP/SAVPF 96", "a=bundle-only", "a=mid:1", "a=sendonly"),
			[]string{"0"}},
		{"bundle-only but inactive", sessionHead + offerLines(
			"a=group:BUNDLE 0 1",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
			"m=video 0 UDP/TLS/RTP/SAVPF 96", "a=bundle-only", "a=mid:1", "a=inactive"),
			[]string{"0"}},
		{"another group kind does not bundle", sessionHead + offerLines(
			"a=group:LS 0 1",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
			"m=video 0 UDP/TLS/RTP/SAVPF 96", "a=bundle-only", "a=mid:1", "a=sendonly"),
			[]string{"0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s sdp.SessionDescription
			if err := s.UnmarshalString(c.sdp); err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(sendingMids(&s)))
			if !slices.Equal(got, c.want) {
				t.Errorf("sending mids %v, want %v", got, c.want)
			}
		})
	}
}

// FuzzOfferMids: whatever a client offers, reading its sending mids and
// simulcast RIDs neither panics nor names a mid the offer does not have.
func FuzzOfferMids(f *testing.F) {
	f.Add(sessionHead + offerLines("a=group:BUNDLE 0 1",
		"m=audio 9 UDP/TLS/RTP/SAVPF 109", "a=mid:0", "a=sendonly",
		"m=video 0 UDP/TLS/RTP/SAVPF 120", "a=bundle-only", "a=mid:1", "a=sendonly",
		"a=rid:q send", "a=rid:f send", "a=simulcast:send q;~f"))
	f.Add(sessionHead + offerLines("a=group:BUNDLE", "m=video 0 RTP/AVP 0", "a=bundle-only"))
	f.Fuzz(func(t *testing.T, offer string) {
		var s sdp.SessionDescription
		if err := s.UnmarshalString(offer); err != nil {
			return
		}
		mids := map[string]bool{}
		for _, m := range s.MediaDescriptions {
			if mid, ok := m.Attribute("mid"); ok {
				mids[mid] = true
			}
		}
		for mid := range sendingMids(&s) {
			if !mids[mid] {
				t.Fatalf("sending mid %q is in no media section", mid)
			}
		}
		for mid, rids := range simulcastRIDs(&s) {
			if !mids[mid] || len(rids) < 2 {
				t.Fatalf("simulcast mid %q with RIDs %q", mid, rids)
			}
		}
	})
}
