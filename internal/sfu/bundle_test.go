package sfu

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"conclave/internal/conn"
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

// TestBrowserOffers: the publish offers recorded from Firefox ESR and
// Chromium (testdata/offers) give the sending mids and simulcast RIDs the
// client declared, and a publisher keeps every declared source, camera
// included, through join, screen share, stop and ICE restart.
func TestBrowserOffers(t *testing.T) {
	mic, cam, screen, screenAudio := conn.Microphone, conn.Camera, conn.Screen, conn.ScreenAudio
	cases := []struct {
		file    string
		sources map[string]conn.Source // what the client declares (publish tracks)
		want    []string               // sending mids
		rids    []string               // the camera's (mid 1)
	}{
		{"firefox-join.sdp", map[string]conn.Source{"0": mic, "1": cam}, []string{"0", "1"}, []string{"q", "f"}},
		{"firefox-screen.sdp", map[string]conn.Source{"0": mic, "1": cam, "2": screen}, []string{"0", "1", "2"}, []string{"q", "f"}},
		{"firefox-screen-stopped.sdp", map[string]conn.Source{"0": mic, "1": cam}, []string{"0", "1"}, []string{"q", "f"}},
		{"firefox-restart.sdp", map[string]conn.Source{"0": mic, "1": cam}, []string{"0", "1"}, []string{"q", "f"}},
		{"chromium-join.sdp", map[string]conn.Source{"0": mic, "1": cam}, []string{"0", "1"}, []string{"q", "f"}},
		// Chromium's fake screen has a sound track too (mid 3).
		{"chromium-screen.sdp", map[string]conn.Source{"0": mic, "1": cam, "2": screen, "3": screenAudio}, []string{"0", "1", "2", "3"}, []string{"q", "f"}},
		{"chromium-restart.sdp", map[string]conn.Source{"0": mic, "1": cam, "2": screen, "3": screenAudio}, []string{"0", "1", "2", "3"}, []string{"q", "f"}},
	}
	e, err := NewEngine(Config{UDPAddr: "127.0.0.1:0", IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "offers", c.file))
			if err != nil {
				t.Fatal(err)
			}
			var s sdp.SessionDescription
			if err := s.UnmarshalString(string(raw)); err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(sendingMids(&s))); !slices.Equal(got, c.want) {
				t.Errorf("sending mids %v, want %v", got, c.want)
			}
			if got := simulcastRIDs(&s)["1"]; !slices.Equal(got, c.rids) {
				t.Errorf("camera RIDs %v, want %v", got, c.rids)
			}

			// The offer as the server gets it: every declared source
			// is kept, and the answer accepts each live section.
			pub, err := e.newPublisher("alice", &recordingPubEvents{})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			declared := maps.Clone(c.sources)
			declared["9"] = conn.Screen // declared, but in no m-section
			if _, err := pub.HandleOffer(string(raw), declared); err == nil || !strings.Contains(err.Error(), "not in the offer") {
				t.Fatalf("an offer declaring a source in no m-section: %v, want refused", err)
			}
			answer, err := pub.HandleOffer(string(raw), c.sources)
			if err != nil {
				t.Fatalf("handle offer: %v", err)
			}
			pub.mu.Lock()
			kept := maps.Clone(pub.sources)
			pub.mu.Unlock()
			if !maps.Equal(kept, c.sources) {
				t.Errorf("publisher keeps sources %v, want %v", kept, c.sources)
			}
			var a sdp.SessionDescription
			if err := a.UnmarshalString(answer); err != nil {
				t.Fatalf("parse answer: %v", err)
			}
			// The header extensions the server reads (audio level for the
			// active speaker, transport-cc feedback, mid and RID for
			// simulcast) are accepted under the browser's own ids.
			offered := extmaps(&s)
			for mid, exts := range extmaps(&a) {
				for uri, id := range exts {
					if want, ok := offered[mid][uri]; !ok || want != id {
						t.Errorf("answer m-section %s: extension %s with id %d, offered %d", mid, uri, id, want)
					}
				}
			}
			for _, uri := range []string{audioLevelURI, "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"} {
				if _, ok := extmaps(&a)["0"][uri]; !ok {
					t.Errorf("answer's microphone section lacks %s (offered %v)", uri, offered["0"])
				}
			}
			for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI} {
				if _, ok := extmaps(&a)["1"][uri]; !ok {
					t.Errorf("answer's camera section lacks %s (offered %v)", uri, offered["1"])
				}
			}
			for _, m := range a.MediaDescriptions {
				mid, _ := m.Attribute("mid")
				if _, declared := c.sources[mid]; declared && m.MediaName.Port.Value == 0 {
					if _, ok := m.Attribute("bundle-only"); !ok {
						t.Errorf("answer rejects m-section %s (port 0)", mid)
					}
				}
				if _, declared := c.sources[mid]; declared && !slices.Contains([]string{"recvonly"}, direction(m)) {
					t.Errorf("answer for m-section %s: direction %q, want recvonly", mid, direction(m))
				}
			}
		})
	}
}

func direction(m *sdp.MediaDescription) string {
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return "sendrecv"
}

// extmaps maps each m-section's mid to its header extensions: URI -> id.
func extmaps(s *sdp.SessionDescription) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, m := range s.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		out[mid] = map[string]int{}
		for _, a := range m.Attributes {
			if a.Key != "extmap" {
				continue
			}
			var e sdp.ExtMap
			if e.Unmarshal("extmap:"+a.Value) == nil && e.URI != nil {
				out[mid][e.URI.String()] = e.Value
			}
		}
	}
	return out
}
