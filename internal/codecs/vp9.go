package codecs

// MaxSpatialLayers bounds the spatial layers a VP9 scalability structure
// may describe (N_S is 3 bits).
const MaxSpatialLayers = 8

// VP9 is a parsed VP9 RTP payload descriptor (RFC 9628, section 4.2).
//
//	 0 1 2 3 4 5 6 7
//	+-+-+-+-+-+-+-+-+
//	|I|P|L|F|B|E|V|Z|  (required)
//	+-+-+-+-+-+-+-+-+
//	|M| PICTURE ID  |  (if I; 15 bits if M)
//	+-+-+-+-+-+-+-+-+
//	| TID |U| SID |D|  (if L)
//	+-+-+-+-+-+-+-+-+
//	|   TL0PICIDX   |  (if L and not F)
//	+-+-+-+-+-+-+-+-+
//	| P_DIFF      |N|  (if F and P; up to 3 times)
//	+-+-+-+-+-+-+-+-+
//	|  SS ...       |  (if V)
type VP9 struct {
	HeaderSize    int
	InterPicture  bool // P: the frame references an earlier picture
	Flexible      bool // F
	Begin         bool // B: first packet of a layer frame
	End           bool // E: last packet of a layer frame
	NotReference  bool // Z: no upper spatial layer of this picture depends on it
	PictureIDBits uint8
	PictureID     uint16
	HasLayers     bool // L
	TID           uint8
	SwitchingUp   bool // U
	SID           uint8
	InterLayer    bool // D
	TL0PICIDX     uint8

	// HasScalability is set when the packet carries a scalability
	// structure (V); Widths and Heights are then valid for the first
	// SpatialLayers entries if HasResolutions.
	HasScalability bool
	SpatialLayers  int
	HasResolutions bool
	Widths         [MaxSpatialLayers]uint16
	Heights        [MaxSpatialLayers]uint16

	// KeyFrame is true on the first packet of a key picture's base layer:
	// B set, P clear and spatial layer 0.
	KeyFrame bool
}

// Unmarshal parses the descriptor at the start of an RTP payload.
func (v *VP9) Unmarshal(payload []byte) error {
	*v = VP9{}
	if len(payload) < 1 {
		return ErrShortPacket
	}
	b := payload[0]
	v.InterPicture = b&0x40 != 0
	v.HasLayers = b&0x20 != 0
	v.Flexible = b&0x10 != 0
	v.Begin = b&0x08 != 0
	v.End = b&0x04 != 0
	v.HasScalability = b&0x02 != 0
	v.NotReference = b&0x01 != 0
	i := 1
	if b&0x80 != 0 { // I
		if len(payload) < i+1 {
			return ErrShortPacket
		}
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
	if v.HasLayers {
		if len(payload) < i+1 {
			return ErrShortPacket
		}
		l := payload[i]
		v.TID = l >> 5
		v.SwitchingUp = l&0x10 != 0
		v.SID = (l >> 1) & 0x07
		v.InterLayer = l&0x01 != 0
		i++
		if !v.Flexible {
			if len(payload) < i+1 {
				return ErrShortPacket
			}
			v.TL0PICIDX = payload[i]
			i++
		}
	}
	if v.Flexible && v.InterPicture {
		for n := 0; ; n++ {
			if n == 3 || len(payload) < i+1 {
				return ErrShortPacket
			}
			more := payload[i]&0x01 != 0
			i++
			if !more {
				break
			}
		}
	}
	if v.HasScalability {
		if len(payload) < i+1 {
			return ErrShortPacket
		}
		s := payload[i]
		i++
		v.SpatialLayers = int(s>>5) + 1
		v.HasResolutions = s&0x10 != 0
		if v.HasResolutions {
			if len(payload) < i+4*v.SpatialLayers {
				return ErrShortPacket
			}
			for l := 0; l < v.SpatialLayers; l++ {
				v.Widths[l] = uint16(payload[i])<<8 | uint16(payload[i+1])
				v.Heights[l] = uint16(payload[i+2])<<8 | uint16(payload[i+3])
				i += 4
			}
		}
		if s&0x08 != 0 { // G: picture group description
			if len(payload) < i+1 {
				return ErrShortPacket
			}
			groups := int(payload[i])
			i++
			for g := 0; g < groups; g++ {
				if len(payload) < i+1 {
					return ErrShortPacket
				}
				refs := int(payload[i]>>2) & 0x03
				i += 1 + refs
				if len(payload) < i {
					return ErrShortPacket
				}
			}
		}
	}
	v.HeaderSize = i
	v.KeyFrame = v.Begin && !v.InterPicture && v.SID == 0
	return nil
}
