package sfu

import (
	"fmt"

	"github.com/pion/sdp/v3"

	"conclave/internal/conn"
)

// maxMediaSections bounds the m-sections of a publish offer: one of each
// source (microphone, camera, screen, screen-audio) and room for as many
// stopped ones being replaced.
const maxMediaSections = 16

// checkSources verifies what a publish offer declares against the offer
// itself (conn.Publisher.HandleOffer's contract): each declared source
// must match the kind of its m-section (microphone and screen-audio are
// audio, camera and screen video), and a participant publishes at most
// one track of each source. A microphone declared as a camera would
// otherwise escape a host's mute, and a participant could open tracks
// without end.
func checkSources(d *sdp.SessionDescription, sources map[string]conn.Source) error {
	if n := len(d.MediaDescriptions); n > maxMediaSections {
		return fmt.Errorf("the offer has %d media sections; a participant publishes at most %d", n, maxMediaSections)
	}
	kinds := map[string]string{}
	sending := map[string]bool{}
	for _, m := range d.MediaDescriptions {
		if mid, ok := m.Attribute("mid"); ok {
			kinds[mid] = m.MediaName.Media
			_, bundleOnly := m.Attribute("bundle-only")
			_, inactive := m.Attribute("inactive")
			_, recvonly := m.Attribute("recvonly")
			// A stopped transceiver (port 0) or one that sends nothing
			// does not count towards the one-per-source rule.
			sending[mid] = (m.MediaName.Port.Value != 0 || bundleOnly) && !inactive && !recvonly
		}
	}
	seen := map[conn.Source]string{}
	for mid, source := range sources {
		kind, ok := kinds[mid]
		if !ok {
			return fmt.Errorf("track %q is not in the offer", mid)
		}
		if want := string(source.Kind()); kind != want {
			return fmt.Errorf("track %q is declared as %s but carries %s", mid, source, kind)
		}
		if !sending[mid] {
			continue
		}
		if other, dup := seen[source]; dup {
			return fmt.Errorf("tracks %q and %q are both declared as %s; publish one of each source", other, mid, source)
		}
		seen[source] = mid
	}
	return nil
}
