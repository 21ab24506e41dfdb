package sfu

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/packetcache"
)

// DownTrack sends one up track to one subscriber. It implements
// webrtc.TrackLocal so that it can be added to the subscriber's peer
// connection, and rewrites SSRC and payload type for that connection.
type DownTrack struct {
	up     *UpTrack
	stream string

	binding atomic.Pointer[binding]

	retransmitMu  sync.Mutex // guards retransmitBuf and retransmitPkt
	retransmitBuf [packetcache.MaxPacketSize]byte
	retransmitPkt rtp.Packet
}

type binding struct {
	ssrc        uint32
	payloadType uint8
	write       webrtc.TrackLocalWriter
}

func newDownTrack(up *UpTrack) *DownTrack {
	stream := up.participant
	if up.source == "screen" || up.source == "screen-audio" {
		stream = up.participant + "-screen"
	}
	return &DownTrack{up: up, stream: stream}
}

// Bind is called by the peer connection when negotiation attaches the
// track; it picks the payload type the subscriber accepted for the up
// track's codec.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	want := d.up.codec
	var partial *webrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, want.MimeType) || c.ClockRate != want.ClockRate {
			continue
		}
		if c.SDPFmtpLine == want.SDPFmtpLine {
			partial = &c
			break
		}
		if partial == nil {
			partial = &c
		}
	}
	if partial == nil {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	d.binding.Store(&binding{
		ssrc:        uint32(ctx.SSRC()),
		payloadType: uint8(partial.PayloadType),
		write:       ctx.WriteStream(),
	})
	// A new subscriber cannot decode until the next key frame.
	d.up.RequestKeyFrame()
	return *partial, nil
}

// Unbind detaches the track from its peer connection.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.binding.Store(nil)
	return nil
}

// ID is the track id carried in the subscriber's SDP.
func (d *DownTrack) ID() string { return d.up.id }

// RID is empty: a down track carries a single encoding.
func (d *DownTrack) RID() string { return "" }

// StreamID groups a participant's microphone and camera (for lip sync), and
// its screen and screen audio, into one media stream each.
func (d *DownTrack) StreamID() string { return d.stream }

// Kind is audio or video.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.up.kind }

// Up returns the up track this down track forwards.
func (d *DownTrack) Up() *UpTrack { return d.up }

// writeRTP sends a packet of the up track to the subscriber. Header
// extensions are dropped: their ids were negotiated with the publisher, not
// with this subscriber.
func (d *DownTrack) writeRTP(p *rtp.Packet) {
	b := d.binding.Load()
	if b == nil {
		return
	}
	h := p.Header
	h.SSRC = b.ssrc
	h.PayloadType = b.payloadType
	h.Extension = false
	h.Extensions = nil
	h.ExtensionProfile = 0
	if p.PaddingSize != 0 && h.PaddingSize == 0 {
		h.PaddingSize = p.PaddingSize
	}
	_, _ = b.write.WriteRTP(&h, p.Payload)
}

// readRTCP handles the subscriber's feedback for this track until the
// sender stops: key frame requests go to the publisher (throttled), NACKs
// are answered from the up track's packet cache.
func (d *DownTrack) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.up.RequestKeyFrame()
			case *rtcp.TransportLayerNack:
				d.retransmit(p)
			}
		}
	}
}

func (d *DownTrack) retransmit(n *rtcp.TransportLayerNack) {
	if d.up.cache == nil {
		return
	}
	d.retransmitMu.Lock()
	defer d.retransmitMu.Unlock()
	for _, pair := range n.Nacks {
		pair.Range(func(seq uint16) bool {
			size := d.up.cache.Get(seq, d.retransmitBuf[:])
			if size == 0 {
				return true
			}
			if d.retransmitPkt.Unmarshal(d.retransmitBuf[:size]) == nil {
				d.writeRTP(&d.retransmitPkt)
			}
			return true
		})
	}
}
