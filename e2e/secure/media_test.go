package secure

import (
	"bytes"
	"image"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"golang.org/x/image/vp8"

	"conclave/internal/client"
	"conclave/internal/client/ivf"
	"conclave/internal/client/media"
)

// repeatSource publishes one frame over and over at 15 frames/s: the same
// plaintext every time, so that the wire shows whether identical frames
// give identical ciphertexts.
type repeatSource struct {
	frame []byte
	codec client.Codec
}

func (r *repeatSource) Codec() client.Codec { return r.codec }

func (r *repeatSource) NextFrame(buf []byte) ([]byte, time.Duration, error) {
	return append(buf[:0], r.frame...), time.Second / 15, nil
}

// tinyKeyFrame is a small frame that the client and the SFU take for a
// VP8 key frame of 320x240 (it does not decode): cheap media for tests
// about keys, not pictures.
func tinyKeyFrame() []byte {
	f := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}
	return append(f, bytes.Repeat([]byte{0xa5}, 40)...)
}

// clipKeyFrame returns the first frame of the test clip (a key frame).
func clipKeyFrame(t *testing.T) []byte {
	t.Helper()
	r, err := ivf.NewReader(bytes.NewReader(media.VideoIVF))
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := r.ReadFrame(nil)
	if err != nil || f[0]&1 != 0 {
		t.Fatalf("clip's first frame: %v", err)
	}
	return f
}

func decodeVP8(frame []byte) (*image.YCbCr, error) {
	d := vp8.NewDecoder()
	d.Init(bytes.NewReader(frame), len(frame))
	if _, err := d.DecodeFrameHeader(); err != nil {
		return nil, err
	}
	return d.DecodeFrame()
}

func samePicture(a, b *image.YCbCr) bool {
	return a.Rect == b.Rect && bytes.Equal(a.Y, b.Y) && bytes.Equal(a.Cb, b.Cb) && bytes.Equal(a.Cr, b.Cr)
}

// tap keeps a copy of every RTP packet the SFU forwards (server.Options.Tap).
type tap struct {
	mu      sync.Mutex
	packets []tapped
}

type tapped struct {
	participant, source, codec string
	at                         time.Time
	pkt                        rtp.Packet
}

// Packet implements sfu.Tap.
func (t *tap) Packet(participant, source, codec string, pkt *rtp.Packet) {
	c := tapped{participant: participant, source: source, codec: codec, at: time.Now(), pkt: *pkt}
	c.pkt.Payload = bytes.Clone(pkt.Payload)
	c.pkt.Header.CSRC = nil
	c.pkt.Header.Extensions = nil
	t.mu.Lock()
	t.packets = append(t.packets, c)
	t.mu.Unlock()
}

// wireFrame is a frame as the SFU forwarded it, rebuilt from its packets.
type wireFrame struct {
	data []byte
	at   time.Time // arrival of its last packet
}

// vp8Frames rebuilds the VP8 frames of a participant's camera: the packets
// of one RTP timestamp, in sequence order, with the VP8 payload descriptor
// (RFC 7741, section 4.2) stripped and the partitions concatenated. Only
// frames whose packets all arrived (first has S=1, last has the marker,
// sequence numbers contiguous) are returned, in order.
func (t *tap) vp8Frames(participant string) []wireFrame {
	t.mu.Lock()
	var pkts []tapped
	for _, p := range t.packets {
		if p.participant == participant && p.source == "camera" {
			pkts = append(pkts, p)
		}
	}
	t.mu.Unlock()
	byTS := map[uint32][]tapped{}
	var order []uint32
	for _, p := range pkts {
		if byTS[p.pkt.Timestamp] == nil {
			order = append(order, p.pkt.Timestamp)
		}
		byTS[p.pkt.Timestamp] = append(byTS[p.pkt.Timestamp], p)
	}
	var out []wireFrame
	for _, ts := range order {
		ps := byTS[ts]
		sort.Slice(ps, func(i, j int) bool { return int16(ps[i].pkt.SequenceNumber-ps[j].pkt.SequenceNumber) < 0 })
		var data []byte
		ok := ps[len(ps)-1].pkt.Marker
		for i, p := range ps {
			if i > 0 && ps[i-1].pkt.SequenceNumber+1 != p.pkt.SequenceNumber {
				ok = false
			}
			body, start, good := stripVP8Descriptor(p.pkt.Payload)
			if !good || (i == 0) != start {
				ok = false
			}
			data = append(data, body...)
		}
		if ok {
			out = append(out, wireFrame{data: data, at: ps[len(ps)-1].at})
		}
	}
	return out
}

// stripVP8Descriptor returns the payload after the VP8 payload descriptor
// and whether the packet starts a partition 0 (S=1, PID=0).
func stripVP8Descriptor(p []byte) (body []byte, start, ok bool) {
	if len(p) < 1 {
		return nil, false, false
	}
	n := 1
	start = p[0]&0x10 != 0 && p[0]&0x07 == 0
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return nil, false, false
		}
		x := p[1]
		n = 2
		if x&0x80 != 0 { // I: picture id, 7 or 15 bits
			if len(p) < n+1 {
				return nil, false, false
			}
			if p[n]&0x80 != 0 {
				n++
			}
			n++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			n++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX
			n++
		}
	}
	if len(p) < n {
		return nil, false, false
	}
	return p[n:], start, true
}
