package sfu

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/codecs"
	"conclave/internal/conn"
	"conclave/internal/packetcache"
	"conclave/internal/sfu/mediasock"
)

// DownTrack sends one up track to one subscriber. It implements
// webrtc.TrackLocal so that it can be added to the subscriber's peer
// connection. Its forwarder chooses the layer to send, switching only on
// key frames, and rewrites SSRC, payload type, sequence numbers,
// timestamps and VP8 picture ids so that the subscriber's decoder sees one
// continuous stream.
type DownTrack struct {
	up       *UpTrack
	stream   string       // conn.TrackOptions.Stream
	priority atomic.Int32 // conn.TrackOptions.Priority

	binding atomic.Pointer[binding]

	// Mirrors of the selector's state, readable without the lock: the
	// forwarding loops filter on them, dynacast and the allocator read
	// them.
	cur     atomic.Int32 // spatial layer being forwarded, -1 none
	tgt     atomic.Int32 // spatial layer aimed at, -1 paused
	desired atomic.Int32 // layer the allocator would like (may not be sent yet)
	// sized is the layer the rendered size wants, whatever the
	// bandwidth: dynacast keeps it coming from the publisher, so that an
	// upgrade the bandwidth allows later (a probe, a lifted bottleneck)
	// does not wait for it to resume. -1 hidden.
	sized atomic.Int32

	// Rendering size reported by the subscriber; -1 = not reported.
	width, height atomic.Int32

	mu     sync.Mutex // forwarding state below
	sel    layerSelector
	munger rtpMunger
	video  bool
	hist   *history // nil for audio, and until the first packet is forwarded
	hdr    rtp.Header
	ext    [2]rtp.Extension // backing array for extensions added downstream (TWCC)
	// frameEnd: the last packet sent in sequence ended a frame (or was
	// padding), so padding may follow without splitting a frame.
	frameEnd bool
	lastSent int64 // unix nanoseconds of the last media packet sent

	// path is the subscriber's own send path once it is up (sendpath.go);
	// nil: Pion's track writer. sr counts what went out on it, for the
	// sender reports (under the path's lock).
	path atomic.Pointer[sendPath]
	sr   srStats
	// ready: the subscriber's connection is up (setReady).
	ready atomic.Bool

	retransmitMu sync.Mutex // guards the retransmission buffers and budget
	// resendTokens and resendAt are the NACK budget: packets this
	// subscriber may still have resent, refilled at nackRate.
	resendTokens  float64
	resendAt      int64
	retransmitBuf [packetcache.MaxPacketSize]byte
	retransmitPkt rtp.Packet
	retransmitHdr rtp.Header
	retransmitExt [2]rtp.Extension
	retransmitVP8 codecs.VP8
}

type binding struct {
	ssrc        uint32
	payloadType uint8
	twccID      uint8 // transport-wide sequence number extension, 0 if not negotiated
	write       webrtc.TrackLocalWriter
}

// send writes one packet: on the subscriber's own send path when it is
// up, else through Pion.
func (d *DownTrack) send(b *binding, h *rtp.Header, payload []byte, now int64, batch *mediasock.Batch) {
	if p := d.path.Load(); p != nil {
		if now == 0 {
			now = time.Now().UnixNano()
		}
		p.writeRTP(d, b.twccID, h, payload, now, batch)
		return
	}
	_, _ = b.write.WriteRTP(h, payload)
}

func newDownTrack(up *UpTrack, opts conn.TrackOptions) *DownTrack {
	d := &DownTrack{up: up, stream: opts.Stream}
	d.priority.Store(int32(opts.Priority))
	d.munger.clockRate = up.codec.ClockRate
	if d.munger.clockRate == 0 {
		d.munger.clockRate = 90000
	}
	// Start on the lowest layer: a small key frame, a fast first image;
	// the allocator moves up from there.
	if up.svc {
		d.sel = newSVCSelector(0)
	} else {
		d.sel = newSimulcastSelector(0)
	}
	// The history is made when the first packet is forwarded: a
	// subscriber is given every publisher's tracks and may show few.
	d.video = up.kind == webrtc.RTPCodecTypeVideo
	d.cur.Store(-1)
	d.tgt.Store(0)
	d.desired.Store(0)
	d.sized.Store(-1)
	d.width.Store(-1)
	d.height.Store(-1)
	return d
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
	var twcc uint8
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == transportCCURI {
			twcc = uint8(e.ID)
		}
	}
	d.bind(uint32(ctx.SSRC()), uint8(partial.PayloadType), twcc, ctx.WriteStream())
	return *partial, nil
}

func (d *DownTrack) bind(ssrc uint32, pt, twcc uint8, w webrtc.TrackLocalWriter) {
	d.binding.Store(&binding{ssrc: ssrc, payloadType: pt, twccID: twcc, write: w})
	if p := d.path.Load(); p != nil {
		p.attach(d, ssrc)
	}
	// A new subscriber cannot decode until the next key frame: asked
	// for once its connection can carry it (setReady).
	if d.ready.Load() {
		d.up.requestKeyFrame(int8(d.tgt.Load()))
	}
}

// setReady marks the subscriber's connection up (DTLS done): from now on
// the down track forwards, starting at the key frame it asks for. Before,
// nothing it would send could arrive, and a key frame taken then would
// leave the subscriber's decoder waiting for the next (a fast join,
// docs/benchmarks.md "Join").
func (d *DownTrack) setReady() {
	if d.ready.Swap(true) {
		return
	}
	if d.binding.Load() != nil {
		d.up.requestKeyFrame(int8(d.tgt.Load()))
	}
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

// StreamID is the media stream the room put the track in
// (conn.TrackOptions.Stream): the tracks of one stream play in sync.
func (d *DownTrack) StreamID() string { return d.stream }

// Kind is audio or video.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.up.kind }

// Up returns the up track this down track forwards.
func (d *DownTrack) Up() *UpTrack { return d.up }

// SetTargetSize records the size, in device pixels, at which the
// subscriber renders this track; 0x0 means hidden: nothing is forwarded
// until it is shown again. The stream allocator picks the layer. It
// reports whether the track now covers more pixels than before (shown,
// or larger).
func (d *DownTrack) SetTargetSize(width, height int) (grew bool) {
	w, h := int64(max(width, 0)), int64(max(height, 0))
	ow, oh := int64(d.width.Swap(int32(w))), int64(d.height.Swap(int32(h)))
	return ow >= 0 && oh >= 0 && w*h > ow*oh
}

// CurrentLayer is the spatial layer being forwarded, -1 when none.
func (d *DownTrack) CurrentLayer() int { return int(d.cur.Load()) }

// setTarget points the selector at spatial layer s (-1 pauses) and asks
// the publisher for the key frame that the switch needs.
func (d *DownTrack) setTarget(s int8) {
	d.mu.Lock()
	changed := d.sel.target() != s
	d.sel.setTarget(s)
	cur := d.sel.current()
	if s < 0 {
		cur = -1 // a pause takes effect at once
	}
	d.tgt.Store(int32(s))
	d.mu.Unlock()
	if changed && s >= 0 && (cur < 0 || !d.up.svc && cur != s || d.up.svc && s > cur) {
		d.up.requestKeyFrame(s)
	}
}

// follows reports whether packets like info's may be forwarded: those of
// the simulcast encoding the down track sends or is switching to.
func (d *DownTrack) follows(info *packetInfo) bool {
	l := int32(info.layer)
	return l == d.cur.Load() || l == d.tgt.Load() || d.up.svc
}

// writeRTP forwards one packet of the up track, if the selector wants it.
// It runs on the up layer's reading goroutine and allocates nothing.
// Header extensions of the publisher are not forwarded: their ids were
// negotiated with the publisher, not with this subscriber.
func (d *DownTrack) writeRTP(p *rtp.Packet, info *packetInfo) {
	b := d.binding.Load()
	if b == nil || !d.ready.Load() {
		return
	}
	if !d.follows(info) {
		return // another simulcast encoding
	}
	d.mu.Lock()
	dec, switched, marker := d.sel.decide(info)
	// A completed switch or pause: the layer left may no longer be
	// needed at the publisher. Dynacast looks again off this goroutine
	// (updateSoon): what it decides may go out as a signaling message.
	cur := int32(d.sel.current())
	moved := d.cur.Swap(cur) != cur
	if dec != forward {
		if dec == skip {
			d.munger.skip(p.SequenceNumber)
		}
		d.mu.Unlock()
		if moved {
			d.up.dyn.updateSoon()
		}
		return
	}
	var pid uint16
	var tl0 uint8
	hasPID, hasTL0 := false, false
	if info.isVP8 {
		hasPID, pid = info.vp8.PictureIDBits != 0, info.vp8.PictureID
		hasTL0, tl0 = info.vp8.HasTL0PICIDX, info.vp8.TL0PICIDX
	}
	if switched {
		d.munger.switchTo(p.SequenceNumber, p.Timestamp, pid, hasPID, tl0, hasTL0, info.now)
	}
	out, ok := d.munger.forward(p.SequenceNumber, p.Timestamp, pid, hasPID, tl0, hasTL0, info.now)
	if !ok {
		d.mu.Unlock()
		if moved {
			d.up.dyn.updateSoon()
		}
		return
	}
	h := &d.hdr
	*h = p.Header
	h.SSRC = b.ssrc
	h.PayloadType = b.payloadType
	h.SequenceNumber = out.seq
	h.Timestamp = out.ts
	h.Marker = marker
	h.Extension = false
	h.Extensions = d.ext[:0]
	h.ExtensionProfile = 0
	if info.pad > 0 {
		h.Padding = true
		h.PaddingSize += info.pad
	}

	payload := p.Payload
	var saved [8]byte
	rewrite := info.isVP8 && (hasPID && out.pid&info.vp8.PictureIDMask() != pid || hasTL0 && out.tl0 != tl0)
	if rewrite {
		copy(saved[:], payload[:min(info.vp8.HeaderSize, len(saved))])
		info.vp8.SetPictureID(payload, out.pid)
		info.vp8.SetTL0PICIDX(payload, out.tl0)
	}
	d.send(b, h, payload, info.sent, info.batch)
	if out.seq == d.munger.lastOutSeq {
		d.frameEnd = marker
		d.lastSent = info.now
	}
	if rewrite {
		// The payload is the up track's buffer, shared with the other
		// down tracks: put the original descriptor back.
		copy(payload, saved[:min(info.vp8.HeaderSize, len(saved))])
	}
	if d.video {
		if d.hist == nil {
			d.hist = new(history)
		}
		d.hist.record(sentPacket{outSeq: out.seq, inSeq: p.SequenceNumber, layer: info.layer,
			marker: marker, ts: out.ts, pid: out.pid, tl0: out.tl0})
	}
	d.mu.Unlock()
	if moved {
		d.up.dyn.updateSoon()
	}
}

// paddingIdle is how long a down track must have sent nothing before
// padding may follow an unfinished frame.
const paddingIdle = 200 * time.Millisecond

// writePadding sends up to n padding-only packets of size padding bytes
// (at most 255) for bandwidth probing, and returns how many it sent. They
// take the down track's next sequence numbers and its last timestamp, so
// the stream stays continuous; they go only between frames (after a
// packet with the marker bit, or when the track has been idle), never
// inside one. A NACK for a padding packet is ignored. It allocates
// nothing.
func (d *DownTrack) writePadding(n int, size uint8, now int64) int {
	b := d.binding.Load()
	if b == nil || n <= 0 || size == 0 {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hist == nil {
		return 0 // nothing forwarded yet: no frame to pad after
	}
	if !d.frameEnd && now-d.lastSent < int64(paddingIdle) {
		return 0
	}
	sent := 0
	for ; sent < n; sent++ {
		seq, ts, ok := d.munger.pad()
		if !ok {
			break
		}
		h := &d.hdr
		*h = rtp.Header{
			Version:        2,
			Padding:        true,
			PaddingSize:    size,
			PayloadType:    b.payloadType,
			SequenceNumber: seq,
			Timestamp:      ts,
			SSRC:           b.ssrc,
			Extensions:     d.ext[:0],
		}
		d.send(b, h, nil, now, nil)
		d.hist.record(sentPacket{outSeq: seq, layer: -1, ts: ts})
		d.frameEnd = true
	}
	return sent
}

// readRTCP handles the subscriber's feedback for this track until the
// sender stops: key frame requests go to the publisher (throttled), NACKs
// are answered from the up layers' packet caches.
func (d *DownTrack) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.keyFrameRequested()
			case *rtcp.TransportLayerNack:
				d.retransmit(p)
			}
		}
	}
}

// retransmit answers a NACK: each requested sequence number is mapped back
// to its source layer and sequence number through the history, read from
// that layer's cache and rewritten as it was first sent.
//
// Each subscriber has a budget of retransmissions (nackBurst packets, then
// nackRate a second): enough to repair the losses of a poor link, not
// enough for a subscriber that NACKs everything to make the SFU resend
// its cache without end. Requests beyond the budget are ignored; the
// subscriber asks for a key frame instead when it cannot repair.
func (d *DownTrack) retransmit(n *rtcp.TransportLayerNack) {
	d.retransmitEach(func(resend func(uint16) bool) {
		for _, pair := range n.Nacks {
			pair.Range(resend)
		}
	})
}

// retransmitEach answers one NACK whose sequence numbers each calls
// resend with (resend reports false once the budget is spent).
func (d *DownTrack) retransmitEach(each func(resend func(seq uint16) bool)) {
	if !d.video {
		return
	}
	d.retransmitMu.Lock()
	defer d.retransmitMu.Unlock()
	now := d.up.clock.Now().UnixNano()
	if d.resendAt == 0 {
		d.resendTokens = nackBurst
	} else {
		d.resendTokens = min(nackBurst, d.resendTokens+float64(now-d.resendAt)*nackRate/1e9)
	}
	d.resendAt = now
	each(func(seq uint16) bool {
		if d.resendTokens < 1 {
			return false
		}
		d.resendTokens--
		d.resend(seq)
		return true
	})
}

// keyFrameRequested passes the subscriber's PLI or FIR on to the
// publisher of the layer it receives (throttled there).
func (d *DownTrack) keyFrameRequested() {
	l := d.cur.Load()
	if l < 0 {
		l = d.tgt.Load()
	}
	d.up.requestKeyFrame(int8(l))
}

// The NACK budget of a subscriber's video track: a burst of nackBurst
// retransmitted packets, then nackRate a second (a quarter of a 2.5 Mbit/s
// stream of 1 200-byte packets).
const (
	nackBurst = 256
	nackRate  = 64
)

func (d *DownTrack) resend(seq uint16) {
	b := d.binding.Load()
	if b == nil {
		return
	}
	d.mu.Lock()
	var e sentPacket
	ok := false
	if d.hist != nil {
		e, ok = d.hist.lookup(seq)
	}
	d.mu.Unlock()
	if !ok || e.layer < 0 || int(e.layer) >= maxLayers {
		return
	}
	l := d.up.layers[e.layer].Load()
	if l == nil || l.cache == nil {
		return
	}
	size := l.cache.Get(e.inSeq, d.retransmitBuf[:])
	if size == 0 || d.retransmitPkt.Unmarshal(d.retransmitBuf[:size]) != nil {
		return
	}
	p := &d.retransmitPkt
	if d.up.isVP8 {
		var v = &d.retransmitVP8
		if v.Unmarshal(p.Payload) == nil {
			v.SetPictureID(p.Payload, e.pid)
			v.SetTL0PICIDX(p.Payload, e.tl0)
		}
	}
	h := &d.retransmitHdr
	*h = p.Header
	h.SSRC = b.ssrc
	h.PayloadType = b.payloadType
	h.SequenceNumber = e.outSeq
	h.Timestamp = e.ts
	h.Marker = e.marker
	h.Extension = false
	h.Extensions = d.retransmitExt[:0]
	h.ExtensionProfile = 0
	d.send(b, h, p.Payload, 0, nil)
}
