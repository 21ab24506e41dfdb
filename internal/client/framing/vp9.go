package framing

// VP9 is the Depacketizer of RFC 9628. A frame starts at the beginning of
// the lowest spatial layer (B bit, spatial id 0) and ends at the marker,
// so that all layers of a picture form one frame.
type VP9 struct{}

// FrameEndsAtMarker implements Depacketizer.
func (VP9) FrameEndsAtMarker() bool { return true }

// Header implements Depacketizer.
func (VP9) Header(p []byte) (n int, start, ok bool) {
	if len(p) == 0 {
		return 0, false, false
	}
	b := p[0]
	hasI, hasP, hasL, flex, begin, hasV := b&0x80 != 0, b&0x40 != 0, b&0x20 != 0, b&0x10 != 0, b&0x08 != 0, b&0x02 != 0
	n = 1
	need := func(k int) bool { return n+k <= len(p) }
	if hasI {
		if !need(1) {
			return 0, false, false
		}
		if p[n]&0x80 != 0 {
			n += 2
		} else {
			n++
		}
	}
	sid := 0
	if hasL {
		if !need(1) {
			return 0, false, false
		}
		sid = int(p[n]>>1) & 0x07
		n++
		if !flex {
			n++ // TL0PICIDX
		}
	}
	if flex && hasP {
		for i := 0; ; i++ {
			if i == 3 || !need(1) {
				return 0, false, false
			}
			more := p[n]&0x01 != 0
			n++
			if !more {
				break
			}
		}
	}
	if hasV {
		if !need(1) {
			return 0, false, false
		}
		ss := p[n]
		n++
		layers := int(ss>>5) + 1
		if ss&0x10 != 0 { // Y: resolutions
			n += 4 * layers
		}
		if ss&0x08 != 0 { // G: picture group
			if !need(1) {
				return 0, false, false
			}
			groups := int(p[n])
			n++
			for range groups {
				if !need(1) {
					return 0, false, false
				}
				refs := int(p[n]>>2) & 0x03
				n += 1 + refs
			}
		}
	}
	if n >= len(p) {
		return 0, false, false
	}
	return n, begin && sid == 0, true
}
