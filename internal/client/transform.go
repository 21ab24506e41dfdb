package client

// Codec names the codec of a media frame.
type Codec string

// Codecs the client sends and receives.
const (
	CodecVP8  Codec = "VP8"
	CodecVP9  Codec = "VP9"
	CodecOpus Codec = "opus"
)

// Kind is "video" or "audio".
func (c Codec) Kind() string {
	if c == CodecOpus {
		return "audio"
	}
	return "video"
}

// FrameInfo describes a frame handed to a FrameTransform.
type FrameInfo struct {
	Codec Codec
	// KeyFrame is true for a video key frame. It is read from the clear
	// first bytes of the frame, which an end-to-end encryption layer
	// leaves readable (docs/e2ee.md).
	KeyFrame bool
	// Participant is the id of the frame's sender: this session's own id
	// when sending, the remote publisher's when receiving.
	Participant string
	// Source is what the track carries: camera, microphone, screen...
	Source string
	// Timestamp is the frame's RTP timestamp.
	Timestamp uint32
	// Layer is the simulcast encoding of an outgoing frame, 0 for the
	// lowest (q) and for tracks without simulcast; 0 when receiving.
	Layer int
}

// A FrameTransform changes whole encoded frames between the codec and the
// packetizer: on the sending side after a frame is read and before it is
// cut into RTP packets, on the receiving side after the packets are put
// back together and before the frame reaches its sink. End-to-end
// encryption (SFrame) plugs in here; the default is the identity.
//
// TransformFrame returns the transformed frame. It may append to dst[:0]
// (whose capacity the caller keeps for the next frame) or return frame
// itself; it must not keep either slice after returning. An error drops
// the frame (for a receiver: a frame it has no key for). A transform is
// called from one goroutine per track, and from several tracks at once.
type FrameTransform interface {
	TransformFrame(info FrameInfo, frame, dst []byte) ([]byte, error)
}

// isKeyFrame reads the key frame flag of a frame's clear first bytes.
func isKeyFrame(c Codec, frame []byte) bool {
	if len(frame) == 0 {
		return false
	}
	switch c {
	case CodecVP8:
		return frame[0]&0x01 == 0 // RFC 6386, section 9.1: P bit clear
	case CodecVP9:
		// Uncompressed header of profiles 0 and 1: frame marker (2 bits),
		// profile (2), show_existing_frame (1), frame_type (1, 0 = key).
		b := frame[0]
		return b>>6 == 2 && b&0x08 == 0 && b&0x04 == 0
	case CodecOpus:
		return true
	}
	return false
}

// vp8Size returns the picture size of a VP8 key frame (RFC 6386, section
// 9.1), or zeros.
func vp8Size(frame []byte) (w, h uint16) {
	if len(frame) < 10 || frame[0]&0x01 != 0 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0
	}
	w = (uint16(frame[6]) | uint16(frame[7])<<8) & 0x3fff
	h = (uint16(frame[8]) | uint16(frame[9])<<8) & 0x3fff
	return w, h
}
