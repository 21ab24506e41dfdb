package framing

import "conclave/internal/codecs"

// VP9 is the Depacketizer of RFC 9628, on the descriptor parser the SFU
// uses (internal/codecs). A frame starts at the beginning of the lowest
// spatial layer (B bit, spatial id 0) and ends at the marker, so that all
// layers of a picture form one frame.
type VP9 struct{}

// FrameEndsAtMarker implements Depacketizer.
func (VP9) FrameEndsAtMarker() bool { return true }

// Header implements Depacketizer.
func (VP9) Header(p []byte) (n int, start, ok bool) {
	var v codecs.VP9
	if v.Unmarshal(p) != nil || v.HeaderSize >= len(p) {
		return 0, false, false // malformed, or no frame data at all
	}
	return v.HeaderSize, v.Begin && v.SID == 0, true
}
