// Package codecs reads and rewrites the parts of video RTP payloads that an
// SFU may see when media is end-to-end encrypted: the RTP payload
// descriptors of VP8 (RFC 7741) and VP9 (RFC 9628), and the clear prefix
// of a VP8 frame (docs/e2ee.md, section 5.5). Everything here parses
// untrusted input: functions return errors, never panic, and allocate
// nothing.
package codecs

import "errors"

// ErrShortPacket is returned when a payload ends inside its descriptor.
var ErrShortPacket = errors.New("codecs: payload too short for its descriptor")

// VP8 is a parsed VP8 RTP payload descriptor (RFC 7741, section 4.2).
//
//	 0 1 2 3 4 5 6 7
//	+-+-+-+-+-+-+-+-+
//	|X|R|N|S|R| PID |  (required)
//	+-+-+-+-+-+-+-+-+
//	|I|L|T|K| RSV   |  (if X)
//	+-+-+-+-+-+-+-+-+
//	|M| PictureID   |  (if I; 15 bits if M)
//	+-+-+-+-+-+-+-+-+
//	|   TL0PICIDX   |  (if L)
//	+-+-+-+-+-+-+-+-+
//	|TID|Y| KEYIDX  |  (if T or K)
//	+-+-+-+-+-+-+-+-+
type VP8 struct {
	// HeaderSize is the descriptor's length: the VP8 payload starts there.
	HeaderSize int
	// NonReference is the N bit: no other frame depends on this one.
	NonReference bool
	// Start is the S bit: the packet starts a partition.
	Start bool
	// Partition is the partition index (PID).
	Partition uint8

	// PictureIDBits is 0 (absent), 7 or 15.
	PictureIDBits uint8
	PictureID     uint16
	HasTL0PICIDX  bool
	TL0PICIDX     uint8
	HasTID        bool
	TID           uint8
	LayerSync     bool // Y bit

	// KeyFrame is true on the first packet of a key frame: S set,
	// partition 0, and the P bit of the VP8 payload header (byte 0,
	// readable in the clear prefix) cleared.
	KeyFrame bool

	pictureIDOffset uint8
	tl0Offset       uint8
}

// Unmarshal parses the descriptor at the start of an RTP payload.
func (v *VP8) Unmarshal(payload []byte) error {
	*v = VP8{}
	if len(payload) < 1 {
		return ErrShortPacket
	}
	b := payload[0]
	v.NonReference = b&0x20 != 0
	v.Start = b&0x10 != 0
	v.Partition = b & 0x07
	i := 1
	if b&0x80 != 0 { // X
		if len(payload) < i+1 {
			return ErrShortPacket
		}
		x := payload[i]
		i++
		if x&0x80 != 0 { // I
			if len(payload) < i+1 {
				return ErrShortPacket
			}
			v.pictureIDOffset = uint8(i)
			if payload[i]&0x80 != 0 {
				if len(payload) < i+2 {
					return ErrShortPacket
				}
				v.PictureIDBits = 15
				v.PictureID = uint16(payload[i]&0x7f)<<8 | uint16(payload[i+1])
				i += 2
			} else {
				v.PictureIDBits = 7
				v.PictureID = uint16(payload[i])
				i++
			}
		}
		if x&0x40 != 0 { // L
			if len(payload) < i+1 {
				return ErrShortPacket
			}
			v.HasTL0PICIDX = true
			v.tl0Offset = uint8(i)
			v.TL0PICIDX = payload[i]
			i++
		}
		if x&0x30 != 0 { // T or K
			if len(payload) < i+1 {
				return ErrShortPacket
			}
			if x&0x20 != 0 {
				v.HasTID = true
				v.TID = payload[i] >> 6
				v.LayerSync = payload[i]&0x20 != 0
			}
			i++
		}
	}
	v.HeaderSize = i
	if v.Start && v.Partition == 0 && len(payload) > i {
		v.KeyFrame = payload[i]&0x01 == 0
	}
	return nil
}

// SetPictureID rewrites the picture id in place, keeping the field's width
// (a 7-bit field keeps the low 7 bits). It does nothing when the packet
// has no picture id; payload must be the one v was parsed from.
func (v *VP8) SetPictureID(payload []byte, id uint16) {
	o := int(v.pictureIDOffset)
	switch {
	case v.PictureIDBits == 15 && len(payload) >= o+2:
		payload[o] = 0x80 | byte(id>>8)&0x7f
		payload[o+1] = byte(id)
	case v.PictureIDBits == 7 && len(payload) > o:
		payload[o] = byte(id) & 0x7f
	}
}

// SetTL0PICIDX rewrites TL0PICIDX in place when the packet carries it.
func (v *VP8) SetTL0PICIDX(payload []byte, idx uint8) {
	if v.HasTL0PICIDX && len(payload) > int(v.tl0Offset) {
		payload[v.tl0Offset] = idx
	}
}

// PictureIDMask is the largest picture id the packet's field can hold.
func (v *VP8) PictureIDMask() uint16 {
	if v.PictureIDBits == 7 {
		return 0x7f
	}
	return 0x7fff
}

// VP8FrameSize reads the width and height of a VP8 key frame from the
// start of its payload (after the descriptor): a 3-byte frame tag, the
// start code 9d 01 2a, then 14-bit width and height, each with a 2-bit
// scale (RFC 6386, section 9.1). These 10 bytes stay in the clear under
// Conclave's E2EE. ok is false if frame does not start a key frame.
func VP8FrameSize(frame []byte) (width, height int, ok bool) {
	if len(frame) < 10 || frame[0]&0x01 != 0 {
		return 0, 0, false
	}
	if frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	width = int(frame[6]) | int(frame[7]&0x3f)<<8
	height = int(frame[8]) | int(frame[9]&0x3f)<<8
	return width, height, true
}
