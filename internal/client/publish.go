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
	"github.com/pion/webrtc/v4"

	"conclave/internal/client/framing"
)

// maxKeyFrameSkip bounds how many frames a source may be read ahead to
// find a key frame after a key frame request.
const maxKeyFrameSkip = 300

// publishedTrack is one local track: a FrameSource played in real time.
type publishedTrack struct {
	source      string
	src         FrameSource
	codec       Codec
	local       *webrtc.TrackLocalStaticRTP
	transceiver *webrtc.RTPTransceiver

	wantKey atomic.Bool // a key frame was requested (PLI or FIR)
	frames  atomic.Uint64
	bytes   atomic.Uint64
}

// addPublished adds a sendonly transceiver for src and starts playing it.
func (s *Session) addPublished(p *peers, source string, src FrameSource, self string) (*publishedTrack, error) {
	codec := src.Codec()
	params, ok := codecs[codec]
	if !ok || codec == CodecVP9 {
		return nil, fmt.Errorf("publish %s: sending %s is not supported; use VP8 or Opus", source, codec)
	}
	// Camera and microphone share one stream id, as in the browser, so
	// that receivers can synchronise them.
	local, err := webrtc.NewTrackLocalStaticRTP(params.RTPCodecCapability, source, "conclave-"+self)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", source, err)
	}
	tr, err := p.pub.AddTransceiverFromTrack(local, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", source, err)
	}
	t := &publishedTrack{source: source, src: src, codec: codec, local: local, transceiver: tr}
	t.wantKey.Store(true)
	// A source outlives peer connections: the player of an earlier
	// connection must stop reading it before this one starts.
	prev := s.playing[source]
	done := make(chan struct{})
	s.playing[source] = done
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		t.readRTCP(tr.Sender())
	}()
	go func() {
		defer s.wg.Done()
		defer close(done)
		if prev != nil {
			<-prev
		}
		if err := t.play(p.ctx, self, s.opts.SendTransform); err != nil && p.ctx.Err() == nil {
			s.log.Error("publishing stopped", "source", source, "err", err)
		}
	}()
	return t, nil
}

// readRTCP notes key frame requests. Reading is also what lets the
// interceptors see the NACKs they answer.
func (t *publishedTrack) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				t.wantKey.Store(true)
			}
		}
	}
}

// play sends the source's frames in real time until ctx ends: each frame
// at its presentation time, transformed, packetized and written. A key
// frame request is answered by skipping ahead to the source's next key
// frame, sent in the slot of the frame it replaces.
func (t *publishedTrack) play(ctx context.Context, self string, tr FrameTransform) error {
	var pk framing.Packetizer = framing.OpusPacketizer{}
	clock := uint32(48000)
	video := t.codec != CodecOpus
	if video {
		clock = 90000
		pk = &framing.VP8Packetizer{} // addPublished admits no other video codec
	}
	var (
		pkt    = rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), SSRC: rand.Uint32()}}
		tsBase = rand.Uint32()
		start  = time.Now()
		pos    time.Duration
		buf    []byte
		dst    []byte
		timer  = time.NewTimer(time.Hour)
		info   = FrameInfo{Codec: t.codec, Participant: self, Source: t.source}
	)
	defer timer.Stop()
	write := func(payload []byte, last bool) error {
		pkt.Payload = payload
		pkt.Marker = video && last
		err := t.local.WriteRTP(&pkt)
		pkt.SequenceNumber++
		if errors.Is(err, io.ErrClosedPipe) {
			return nil // the connection is closing; ctx ends the loop
		}
		return err
	}
	for {
		frame, delay, err := t.src.NextFrame(buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.source, err)
		}
		if video && t.wantKey.Load() {
			for i := 0; i < maxKeyFrameSkip && !isKeyFrame(t.codec, frame); i++ {
				if frame, _, err = t.src.NextFrame(frame); err != nil {
					return fmt.Errorf("read %s: %w", t.source, err)
				}
			}
		}
		buf = frame
		info.KeyFrame = isKeyFrame(t.codec, frame)
		if info.KeyFrame {
			t.wantKey.Store(false)
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

		out := frame
		if tr != nil {
			info.Timestamp = tsBase + ticks(pos, clock)
			out, err = tr.TransformFrame(info, frame, dst[:0])
			if err != nil {
				continue // a transform that cannot encrypt must not leak the clear frame
			}
			dst = adopt(dst, out, frame)
		}
		pkt.Timestamp = tsBase + ticks(pos, clock)
		if err := pk.Packetize(out, write); err != nil {
			return fmt.Errorf("send %s: %w", t.source, err)
		}
		t.frames.Add(1)
		t.bytes.Add(uint64(len(out)))
	}
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
