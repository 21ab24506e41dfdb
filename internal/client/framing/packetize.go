package framing

import "fmt"

// MaxPayload is the largest RTP payload the packetizers produce: it leaves
// room for the RTP header, header extensions and SRTP's tag in a 1280-byte
// IPv6 minimum MTU.
const MaxPayload = 1160

// vp8DescriptorLen is the length of the VP8 payload descriptor written by
// VP8Packetizer: the required byte, the extension byte and a 15-bit
// picture id, as libwebrtc sends it (RFC 7741, section 4.2).
const vp8DescriptorLen = 4

// A Packetizer splits one encoded frame into RTP payloads.
type Packetizer interface {
	// Packetize calls emit for each payload of frame in order; last is
	// true for the final one (the RTP marker bit for video). The payload
	// passed to emit is only valid during the call.
	Packetize(frame []byte, emit func(payload []byte, last bool) error) error
}

// VP8Packetizer packetizes VP8 frames (RFC 7741) with a picture id. It
// reuses one buffer: Packetize allocates nothing.
type VP8Packetizer struct {
	pictureID uint16
	buf       [MaxPayload]byte
}

// Packetize implements Packetizer.
func (p *VP8Packetizer) Packetize(frame []byte, emit func([]byte, bool) error) error {
	if len(frame) == 0 {
		return fmt.Errorf("vp8: empty frame")
	}
	const room = MaxPayload - vp8DescriptorLen
	// Equal-sized fragments, as libwebrtc does, so that no tiny last packet
	// is sent.
	count := (len(frame) + room - 1) / room
	size := (len(frame) + count - 1) / count
	id := p.pictureID
	p.pictureID = (p.pictureID + 1) & 0x7fff
	for i := 0; len(frame) > 0; i++ {
		n := min(size, len(frame))
		b := p.buf[:vp8DescriptorLen+n]
		b[0] = 0x80 // X: extension byte present
		if i == 0 {
			b[0] |= 0x10 // S: start of partition 0
		}
		b[1] = 0x80                    // I: picture id present
		b[2] = 0x80 | byte(id>>8)&0x7f // M: 15-bit picture id
		b[3] = byte(id)
		copy(b[vp8DescriptorLen:], frame[:n])
		frame = frame[n:]
		if err := emit(b, len(frame) == 0); err != nil {
			return err
		}
	}
	return nil
}

// OpusPacketizer sends each Opus frame in one RTP packet (RFC 7587).
type OpusPacketizer struct{}

// Packetize implements Packetizer.
func (OpusPacketizer) Packetize(frame []byte, emit func([]byte, bool) error) error {
	if len(frame) == 0 {
		return fmt.Errorf("opus: empty frame")
	}
	if len(frame) > MaxPayload {
		return fmt.Errorf("opus: frame of %d bytes exceeds the %d-byte payload limit", len(frame), MaxPayload)
	}
	return emit(frame, true)
}
