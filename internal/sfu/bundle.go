package sfu

import (
	"strings"

	"github.com/pion/sdp/v3"
)

// bundledMids returns the mids named in the session's BUNDLE groups
// ("a=group:BUNDLE 0 1 2", RFC 8843).
func bundledMids(s *sdp.SessionDescription) map[string]bool {
	out := map[string]bool{}
	for _, a := range s.Attributes {
		if a.Key != "group" {
			continue
		}
		fields := strings.Fields(a.Value)
		if len(fields) == 0 || fields[0] != "BUNDLE" {
			continue
		}
		for _, mid := range fields[1:] {
			out[mid] = true
		}
	}
	return out
}

// liveSection reports whether a media section of an offer is in use. Port
// zero alone means a rejected or stopped section, but port zero with
// a=bundle-only inside a BUNDLE group is a live section that shares the
// transport of the group's first one (RFC 8843 section 6, JSEP RFC 9429
// section 5.2.1): Firefox offers every section after the first that way
// under bundlePolicy max-bundle, where Chromium gives port 9 and no
// bundle-only.
func liveSection(m *sdp.MediaDescription, bundled map[string]bool) bool {
	if m.MediaName.Port.Value != 0 {
		return true
	}
	if _, ok := m.Attribute("bundle-only"); !ok {
		return false
	}
	mid, ok := m.Attribute("mid")
	return ok && bundled[mid]
}
