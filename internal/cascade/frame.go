package cascade

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"conclave/internal/conn"
	"conclave/internal/meeting"
)

// The node-to-node link's frames (docs/cluster.md, "The node-to-node
// link"): a type byte, a 3-byte big-endian length, the payload.
//
//	frameControl: a JSON control message (control)
//	frameMedia:   track id (4 bytes), layer (1 byte), an RTP packet
const (
	frameControl = 1
	frameMedia   = 2
)

// Limits of a frame's payload.
const (
	maxControl = 1 << 20
	maxMedia   = 5 + 1500
	headerLen  = 4
)

// Control message types.
const (
	msgHello    = "hello"     // Name, URL, Relay: the first message each way
	msgPing     = "ping"      // keepalive
	msgEvent    = "event"     // Room, Event: a meeting event
	msgTrack    = "track"     // ID, Room, Track: a track this side relays from now on
	msgUntrack  = "untrack"   // ID: that track ended
	msgLayers   = "layers"    // ID, Active: the layers of a track the receiving side needs
	msgPLI      = "pli"       // ID, Layer: a key frame request
	msgFile     = "file"      // Meeting, File, Size: a meeting file this side keeps (files.go)
	msgFileWant = "file-want" // Token: connect back to this side's listener for a file (files.go)
)

// control is a control message.
type control struct {
	T      string           `json:"t"`
	Name   string           `json:"name,omitempty"`
	URL    string           `json:"url,omitempty"`
	Relay  string           `json:"relay,omitempty"`
	Room   string           `json:"room,omitempty"`
	Event  *meeting.Event   `json:"event,omitempty"`
	ID     uint32           `json:"id,omitempty"`
	Track  *conn.RelayTrack `json:"track,omitempty"`
	Active []bool           `json:"active,omitempty"`
	Layer  int              `json:"layer,omitempty"`

	Meeting string `json:"meeting,omitempty"`
	File    string `json:"file,omitempty"`
	Size    int64  `json:"size,omitempty"`
	Token   string `json:"token,omitempty"`
}

// appendHeader appends a frame header.
func appendHeader(b []byte, typ byte, n int) []byte {
	return append(b, typ, byte(n>>16), byte(n>>8), byte(n))
}

// appendControl appends c as a control frame.
func appendControl(b []byte, c *control) ([]byte, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return b, err
	}
	if len(data) > maxControl {
		return b, fmt.Errorf("control message of %d bytes is too large", len(data))
	}
	b = appendHeader(b, frameControl, len(data))
	return append(b, data...), nil
}

// appendMedia appends an RTP packet of track id's layer as a media frame.
func appendMedia(b []byte, id uint32, layer int, raw []byte) []byte {
	b = appendHeader(b, frameMedia, 5+len(raw))
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, byte(layer))
	return append(b, raw...)
}

// errFrame: the peer sent something that is not a frame of this
// protocol; the link is closed.
var errFrame = errors.New("malformed frame")

// readFrame reads one frame into buf (grown when needed) and returns its
// type and payload.
func readFrame(r *bufio.Reader, buf []byte) (typ byte, payload, next []byte, err error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, buf, err
	}
	typ = h[0]
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	switch {
	case typ == frameControl && n <= maxControl:
	case typ == frameMedia && n >= 5 && n <= maxMedia:
	default:
		return 0, nil, buf, fmt.Errorf("%w: type %d, %d bytes", errFrame, typ, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	payload = buf[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, buf, err
	}
	return typ, payload, buf, nil
}

// parseControl decodes a control message.
func parseControl(payload []byte) (*control, error) {
	var c control
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errFrame, err)
	}
	if c.T == "" {
		return nil, fmt.Errorf("%w: control message without a type", errFrame)
	}
	return &c, nil
}

// parseMedia splits a media frame.
func parseMedia(payload []byte) (id uint32, layer int, raw []byte) {
	return binary.BigEndian.Uint32(payload), int(payload[4]), payload[5:]
}
