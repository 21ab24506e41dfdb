package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"conclave/internal/client/framing"
)

// maxKeyFrameSkip bounds how many frames a source may be read ahead to
// find a key frame after a key frame request.
const maxKeyFrameSkip = 300

// simulcastRIDs are the browser's RIDs of a simulcast camera, lowest
// layer first, for two and three layers (web/static/js/simulcast.mjs).
var simulcastRIDs = map[int][]string{2: {"q", "f"}, 3: {"q", "h", "f"}}

// publishedTrack is one local track: one FrameSource played in real time,
// or one per encoding of a simulcast track.
type publishedTrack struct {
	source      string
	codec       Codec
	transceiver *webrtc.RTPTransceiver
	encodings   []*encoding
}

// encoding is one RTP stream of a published track: the only one, or one
// simulcast layer.
type encoding struct {
	index int
	rid   string // "" without simulcast
	ridB  []byte // rid, for the header extension
	src   FrameSource
	local *webrtc.TrackLocalStaticRTP

	wantKey atomic.Bool // a key frame was requested (PLI or FIR), or the encoding resumed
	paused  atomic.Bool // the server said nobody needs this layer (layers message)
	// reported: the receiver sent an RTCP report about this stream, so it
	// knows the SSRC and no longer needs MID and RID in every packet.
	reported atomic.Bool
	frames   atomic.Uint64
	bytes    atomic.Uint64
}

// checkLayers refuses a simulcast camera the client cannot send.
func checkLayers(o Options) error {
	n := len(o.CameraLayers)
	switch {
	case n == 0:
		return nil
	case o.Camera != nil:
		return errors.New("set Camera or CameraLayers, not both")
	case simulcastRIDs[n] == nil:
		return fmt.Errorf("a simulcast camera needs 2 or 3 sources, not %d; use Camera for one", n)
	}
	for i, src := range o.CameraLayers {
		if src == nil {
			return fmt.Errorf("camera layer %d has no source", i)
		}
		if c := src.Codec(); c != CodecVP8 {
			return fmt.Errorf("camera layer %d is %s; simulcast is sent in VP8 only", i, c)
		}
	}
	return nil
}

// addPublished adds a sendonly transceiver for srcs (one source, or one per
// simulcast encoding, lowest first) and starts playing them.
func (s *Session) addPublished(p *peers, source string, srcs []FrameSource, self string) (*publishedTrack, error) {
	codec := srcs[0].Codec()
	params, ok := codecs[codec]
	if !ok || codec == CodecVP9 {
		return nil, fmt.Errorf("publish %s: sending %s is not supported; use VP8 or Opus", source, codec)
	}
	t := &publishedTrack{source: source, codec: codec}
	for i, src := range srcs {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		rid := ""
		if len(srcs) > 1 {
			rid = simulcastRIDs[len(srcs)][i]
			opts = append(opts, webrtc.WithRTPStreamID(rid))
		}
		// Camera and microphone share one stream id, as in the browser,
		// so that receivers can synchronise them.
		local, err := webrtc.NewTrackLocalStaticRTP(params.RTPCodecCapability, source, "conclave-"+self, opts...)
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", source, err)
		}
		e := &encoding{index: i, rid: rid, ridB: []byte(rid), src: src, local: local}
		e.wantKey.Store(true)
		if i == 0 {
			tr, err := p.pub.AddTransceiverFromTrack(local, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return nil, fmt.Errorf("publish %s: %w", source, err)
			}
			t.transceiver = tr
		} else if err := t.transceiver.Sender().AddEncoding(local); err != nil {
			return nil, fmt.Errorf("publish %s: encoding %s: %w", source, rid, err)
		}
		t.encodings = append(t.encodings, e)
	}
	// The encodings share a clock, so that the frames of one picture
	// carry one RTP timestamp in every layer, as from a browser.
	clock := playClock{start: time.Now(), tsBase: rand.Uint32()}
	for _, e := range t.encodings {
		// A source outlives peer connections: the player of an earlier
		// connection must stop reading it before this one starts.
		key := source + "/" + e.rid
		prev := s.playing[key]
		done := make(chan struct{})
		s.playing[key] = done
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			t.readRTCP(e)
		}()
		go func() {
			defer s.wg.Done()
			defer close(done)
			if prev != nil {
				<-prev
			}
			if err := t.play(p.ctx, e, clock, self, s.opts.SendTransform); err != nil && p.ctx.Err() == nil {
				s.log.Error("publishing stopped", "source", source, "rid", e.rid, "err", err)
			}
		}()
	}
	return t, nil
}

// setActive applies a layers message: encodings nobody needs pause, and
// one that resumes starts again with a key frame.
func (t *publishedTrack) setActive(active []bool) {
	if len(t.encodings) < 2 {
		return
	}
	for i, e := range t.encodings {
		if i >= len(active) {
			break
		}
		if was := e.paused.Swap(!active[i]); was && active[i] {
			e.wantKey.Store(true)
		}
	}
}

// readRTCP notes key frame requests and reports. Reading is also what
// lets the interceptors see the NACKs they answer.
func (t *publishedTrack) readRTCP(e *encoding) {
	sender := t.transceiver.Sender()
	for {
		var pkts []rtcp.Packet
		var err error
		if e.rid == "" {
			pkts, _, err = sender.ReadRTCP()
		} else {
			pkts, _, err = sender.ReadSimulcastRTCP(e.rid)
		}
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				e.wantKey.Store(true)
			case *rtcp.ReceiverReport:
				e.reported.Store(true)
			}
		}
	}
}

// playClock is the media clock shared by the encodings of a track.
type playClock struct {
	start  time.Time
	tsBase uint32
}

// play sends an encoding's frames in real time until ctx ends: each frame
// at its presentation time, transformed, packetized and written. A key
// frame request is answered by skipping ahead to the source's next key
// frame, sent in the slot of the frame it replaces. A paused encoding
// keeps reading its source, so that it stays in step with the others, and
// sends nothing.
func (t *publishedTrack) play(ctx context.Context, e *encoding, clk playClock, self string, tr FrameTransform) error {
	var pk framing.Packetizer = framing.OpusPacketizer{}
	clock := uint32(48000)
	video := t.codec != CodecOpus
	if video {
		clock = 90000
		pk = &framing.VP8Packetizer{} // addPublished admits no other video codec
	}
	var (
		pkt   = rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), SSRC: rand.Uint32()}}
		start = clk.start
		pos   time.Duration
		buf   []byte
		dst   []byte
		timer = time.NewTimer(time.Hour)
		info  = FrameInfo{Codec: t.codec, Participant: self, Source: t.source, Layer: e.index}
		ids   simulcastIDs
		exts  [2]rtp.Extension
	)
	defer timer.Stop()
	write := func(payload []byte, last bool) error {
		pkt.Payload = payload
		pkt.Marker = video && last
		pkt.Extension, pkt.Extensions, pkt.ExtensionProfile = false, exts[:0], 0
		if e.rid != "" && !e.reported.Load() && ids.lookup(t.transceiver) {
			// Until the server knows this SSRC, it finds the track and
			// the layer from MID and RID (RFC 8852), as from a browser.
			_ = pkt.SetExtension(ids.mid, ids.midValue)
			_ = pkt.SetExtension(ids.rid, e.ridB)
		}
		err := e.local.WriteRTP(&pkt)
		pkt.SequenceNumber++
		if errors.Is(err, io.ErrClosedPipe) {
			return nil // the connection is closing; ctx ends the loop
		}
		return err
	}
	for {
		frame, delay, err := e.src.NextFrame(buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.source, err)
		}
		paused := e.paused.Load()
		if video && !paused && e.wantKey.Load() {
			for i := 0; i < maxKeyFrameSkip && !isKeyFrame(t.codec, frame); i++ {
				if frame, _, err = e.src.NextFrame(frame); err != nil {
					return fmt.Errorf("read %s: %w", t.source, err)
				}
			}
		}
		buf = frame
		info.KeyFrame = isKeyFrame(t.codec, frame)
		if info.KeyFrame && !paused {
			e.wantKey.Store(false)
		}

		pos += delay
		wait := time.Until(start.Add(pos))
		switch {
		case wait > 0:
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		case ctx.Err() != nil:
			return nil
		case wait < -time.Second:
			start = start.Add(-wait) // stalled: resume from now, no burst
		}
		if paused {
			continue
		}

		out := frame
		if tr != nil {
			info.Timestamp = clk.tsBase + ticks(pos, clock)
			out, err = tr.TransformFrame(info, frame, dst[:0])
			if err != nil {
				continue // a transform that cannot encrypt must not leak the clear frame
			}
			dst = adopt(dst, out, frame)
		}
		pkt.Timestamp = clk.tsBase + ticks(pos, clock)
		if err := pk.Packetize(out, write); err != nil {
			return fmt.Errorf("send %s: %w", t.source, err)
		}
		e.frames.Add(1)
		e.bytes.Add(uint64(len(out)))
	}
}

// simulcastIDs are the negotiated ids of the MID and RID header
// extensions, and the track's mid, once known.
type simulcastIDs struct {
	mid, rid uint8
	midValue []byte
}

// lookup finds the ids (after negotiation); it reports whether they are
// known.
func (x *simulcastIDs) lookup(tr *webrtc.RTPTransceiver) bool {
	if x.mid != 0 && x.rid != 0 && x.midValue != nil {
		return true
	}
	mid := tr.Mid()
	if mid == "" {
		return false
	}
	for _, h := range tr.Sender().GetParameters().HeaderExtensions {
		switch h.URI {
		case sdp.SDESMidURI:
			x.mid = uint8(h.ID)
		case sdp.SDESRTPStreamIDURI:
			x.rid = uint8(h.ID)
		}
	}
	x.midValue = []byte(mid)
	return x.mid != 0 && x.rid != 0
}

// ticks converts a media time into RTP clock ticks without overflow.
func ticks(d time.Duration, clock uint32) uint32 {
	sec := uint64(d / time.Second)
	rem := uint64(d % time.Second)
	return uint32(sec*uint64(clock) + rem*uint64(clock)/uint64(time.Second))
}

// adopt keeps the larger buffer a transform returned as the next dst,
// unless it is the input frame's own memory.
func adopt(dst, out, frame []byte) []byte {
	if cap(out) <= cap(dst) || sameArray(out, frame) {
		return dst
	}
	return out[:0]
}

// sameArray reports whether a and b share their backing array's end.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1]
}
