package sfu

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/codecs"
	"conclave/internal/packetcache"
)

// keyFrameInterval is the shortest time between two key frame requests sent
// to a publisher for one layer of a track, however many subscribers ask.
const keyFrameInterval = 500 * time.Millisecond

// videoCacheSize is how many packets of a video layer are kept for
// retransmission: about a second of 2 Mbit/s video. Lower simulcast
// layers keep half as many per step down (cacheSize): a 150 kbit/s layer
// fills 512 packets in half a minute, which only costs memory.
const videoCacheSize = 512

// minCacheSize is the least a video layer keeps.
const minCacheSize = 128

// cacheSize is the retransmission cache of layer idx of a track with
// layers simulcast encodings (0 or 1: one layer, the top).
func cacheSize(idx, layers int) int {
	size := videoCacheSize
	for range max(layers-1-idx, 0) {
		size /= 2
	}
	return max(size, minCacheSize)
}

// maxLayers bounds the spatial layers of a track (simulcast encodings or
// VP9 spatial layers).
const maxLayers = 4

// liveTimeout is how long a layer may stay silent and still count as
// being sent.
const liveTimeout = 1500 * time.Millisecond

// UpTrack is one logical media track received from a publisher: a
// (participant, source) with one or more layers. A simulcast video track
// has one layer per RID, each with its own SSRC, packet cache and bitrate;
// a VP9 SVC track has one RTP stream whose spatial layers are read from
// the payload descriptor; anything else has a single layer. Packets are
// written, on the goroutine that reads them, to every down track: video a
// frame at a time (readFrames), audio as each packet comes.
type UpTrack struct {
	id          string
	participant string
	source      string
	mid         string
	kind        webrtc.RTPCodecType
	codec       webrtc.RTPCodecParameters
	isVP8       bool
	isVP9       bool
	svc         bool     // VP9 with a single encoding: layers in the descriptor
	rids        []string // simulcast RIDs, lowest layer first; nil when not simulcast

	pc    *webrtc.PeerConnection
	tap   Tap
	clock clock.Clock // key frame throttling, dynacast
	// arrivals and delay measure the delay the server adds (arrival.go);
	// arrivals is nil when it is not measured.
	arrivals *arrivals
	delay    *delayHistogram
	sends    *stampConn // the media socket, held around batches; nil if not UDP
	audio    struct {
		ext   uint8         // id of the audio-level header extension, 0 if absent
		sum   atomic.Uint64 // sum of (127 - level) since the last read
		count atomic.Uint64
	}

	layers [maxLayers]atomic.Pointer[upLayer] // by layer index (simulcast)
	stats  [maxLayers]layerStats              // by spatial layer
	svcN   atomic.Int32                       // spatial layers announced by VP9 SS

	mu      sync.Mutex                   // serialises changes of downs, readers
	downs   atomic.Pointer[[]*DownTrack] // read lock-free by the forwarding loops
	readers int                          // layers whose read loop runs

	dyn dynacast

	speaker atomic.Bool // the publisher is the active speaker
	muted   atomic.Bool // not forwarded (a host muted it)
	ended   atomic.Bool
	done    chan struct{}
}

// layerStats is what is known about one spatial layer.
type layerStats struct {
	bitrate   atomic.Int64 // bits per second over the last window
	lastRate  atomic.Int64 // last non-zero bitrate, for paused layers
	width     atomic.Int32 // from key frames; 0 until known
	height    atomic.Int32
	lastSeen  atomic.Int64 // unix nanoseconds of the latest media packet (not padding)
	winBytes  int64        // written by the reading goroutine only
	winStart  int64
	keyFrames atomic.Uint64
}

// upLayer is one received RTP stream of an up track.
type upLayer struct {
	track  *UpTrack
	index  int8
	rid    string
	remote *webrtc.TrackRemote
	ssrc   uint32
	cache  *packetcache.Cache // nil for audio

	lastKeyFrameRequest atomic.Int64 // unix nanoseconds
	keyFrameDeferred    atomic.Bool

	single [1]framePacket // reused for every packet forwarded alone
	vp9    codecs.VP9     // parsing scratch
}

// framePacket is a received packet, parsed, waiting to be forwarded.
type framePacket struct {
	buf  []byte // what it was read into
	pkt  rtp.Packet
	info packetInfo
}

func newUpTrack(pc *webrtc.PeerConnection, clk clock.Clock, codec webrtc.RTPCodecParameters, kind webrtc.RTPCodecType, participant, source, mid string, rids []string) *UpTrack {
	if len(rids) > maxLayers {
		rids = rids[:maxLayers]
	}
	u := &UpTrack{
		id:          participant + "-" + mid,
		participant: participant,
		source:      source,
		mid:         mid,
		kind:        kind,
		codec:       codec,
		rids:        rids,
		pc:          pc,
		clock:       clock.Or(clk),
		done:        make(chan struct{}),
	}
	u.isVP8 = equalFold(codec.MimeType, webrtc.MimeTypeVP8)
	u.isVP9 = equalFold(codec.MimeType, webrtc.MimeTypeVP9)
	u.svc = u.isVP9 && len(rids) <= 1
	u.svcN.Store(1)
	empty := []*DownTrack{}
	u.downs.Store(&empty)
	u.dyn.init(u)
	return u
}

// attach adds the received stream of one layer; it returns nil if the
// layer is already there or unknown.
func (u *UpTrack) attach(remote *webrtc.TrackRemote) *upLayer {
	idx := 0
	if len(u.rids) > 0 {
		idx = -1
		for i, r := range u.rids {
			if r == remote.RID() {
				idx = i
			}
		}
		if idx < 0 {
			return nil
		}
	}
	l := &upLayer{track: u, index: int8(idx), rid: remote.RID(), remote: remote, ssrc: uint32(remote.SSRC())}
	if u.kind == webrtc.RTPCodecTypeVideo {
		l.cache = packetcache.New(cacheSize(idx, len(u.rids)))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ended.Load() || !u.layers[idx].CompareAndSwap(nil, l) {
		return nil
	}
	u.readers++
	return l
}

// ID identifies the track within its node.
func (u *UpTrack) ID() string { return u.id }

// Participant is the id of the publishing participant.
func (u *UpTrack) Participant() string { return u.participant }

// Source is what the track carries: microphone, camera, screen, screen-audio.
func (u *UpTrack) Source() string { return u.source }

// Kind is "audio" or "video".
func (u *UpTrack) Kind() string { return u.kind.String() }

// Codec is the negotiated codec's MIME type, e.g. "video/VP8".
func (u *UpTrack) Codec() string { return u.codec.MimeType }

// Mid is the publisher's media id of the track.
func (u *UpTrack) Mid() string { return u.mid }

// Layers is the number of simulcast encodings (1 when not simulcast).
func (u *UpTrack) Layers() int {
	if len(u.rids) == 0 {
		return 1
	}
	return len(u.rids)
}

// Done is closed when the track has stopped for good.
func (u *UpTrack) Done() <-chan struct{} { return u.done }

// spatialLayers is the number of layers a selector can choose from.
func (u *UpTrack) spatialLayers() int {
	if u.svc {
		return int(u.svcN.Load())
	}
	return u.Layers()
}

// read runs one layer's loop until its stream ends. It reports whether it
// was the last layer reading (the track is then over).
func (l *upLayer) read() (last bool) {
	u := l.track
	if u.kind == webrtc.RTPCodecTypeVideo && u.sends != nil {
		l.readFrames(l.remote)
	} else {
		l.readPackets()
	}
	u.mu.Lock()
	u.readers--
	last = u.readers == 0
	u.mu.Unlock()
	return last
}

// readPackets forwards each packet as it comes (audio).
func (l *upLayer) readPackets() {
	fp := &l.single[0]
	fp.buf = make([]byte, packetcache.MaxPacketSize)
	for {
		n, _, err := l.remote.Read(fp.buf)
		if err != nil {
			return
		}
		if l.track.ended.Load() {
			continue // drained, not forwarded
		}
		if l.prepare(fp, fp.buf[:n], time.Now().UnixNano()) {
			l.forward(l.single[:])
		}
	}
}

// maxFrameBatch bounds the packets of one frame forwarded together, and
// frameHold how long the first of them may wait for the others: a paced
// publisher spreads a frame over milliseconds, and a lost last packet
// never comes.
const (
	maxFrameBatch = 32
	frameHold     = 5 * time.Millisecond
)

// readFrames forwards video frame by frame: it gathers the packets of one
// RTP timestamp until the one with the marker bit (or a packet of another
// timestamp, maxFrameBatch packets, or frameHold after the first), then
// writes them to each subscriber in turn with the media socket held, so
// that one subscriber's packets of the frame leave in one system call
// (sendbatch.go). Nothing waits for a frame that is complete.
func (l *upLayer) readFrames(r packetReader) {
	frame := make([]framePacket, maxFrameBatch)
	for i := range frame {
		frame[i].buf = make([]byte, packetcache.MaxPacketSize)
	}
	n := 0           // packets gathered
	var ts uint32    // their timestamp
	waiting := false // a read deadline ends the wait for the rest
	for {
		fp := &frame[n]
		size, _, err := r.Read(fp.buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return
			}
			// frameHold is over: what came of the frame goes now.
			if n > 0 {
				l.forward(frame[:n])
				n = 0
			}
			_ = r.SetReadDeadline(time.Time{})
			waiting = false
			continue
		}
		if l.track.ended.Load() {
			continue // drained, not forwarded
		}
		now := time.Now().UnixNano()
		if !l.prepare(fp, fp.buf[:size], now) {
			continue
		}
		if n > 0 && fp.pkt.Timestamp != ts {
			// Another frame (or a late packet of an earlier one): the
			// gathered ones go first.
			l.forward(frame[:n])
			frame[0], frame[n] = frame[n], frame[0]
			n = 0
		}
		ts = frame[n].pkt.Timestamp
		n++
		if frame[n-1].info.marker || n == maxFrameBatch {
			l.forward(frame[:n])
			n = 0
			if waiting {
				_ = r.SetReadDeadline(time.Time{})
				waiting = false
			}
		} else if !waiting {
			_ = r.SetReadDeadline(time.Unix(0, now).Add(frameHold))
			waiting = true
		}
	}
}

// packetReader is what readFrames reads: a *webrtc.TrackRemote.
type packetReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
	SetReadDeadline(t time.Time) error
}

// handle prepares and forwards one packet by itself.
func (l *upLayer) handle(raw []byte, now int64) {
	if l.prepare(&l.single[0], raw, now) {
		l.forward(l.single[:])
	}
}

// prepare parses, measures and caches one packet into fp, and reports
// whether it is to be forwarded. It allocates nothing.
func (l *upLayer) prepare(fp *framePacket, raw []byte, now int64) bool {
	u := l.track
	pkt := &fp.pkt
	if pkt.Unmarshal(raw) != nil {
		return false
	}
	info := &fp.info
	info.layer = l.index
	info.spatial, info.temporal = 0, 0
	info.keyFrame, info.pictureStart, info.layerEnd = false, false, false
	info.pad = 0
	info.marker = pkt.Marker
	info.padding = len(pkt.Payload) == 0
	info.isVP8 = false
	info.now = now
	st := &u.stats[l.index]

	switch {
	case u.kind == webrtc.RTPCodecTypeAudio:
		info.keyFrame = true
		info.pictureStart = true
		if u.audio.ext != 0 {
			if e := pkt.Header.GetExtension(u.audio.ext); len(e) > 0 {
				u.audio.sum.Add(uint64(127 - e[0]&0x7f))
				u.audio.count.Add(1)
			}
		}
	case info.padding:
	case u.isVP8:
		if info.vp8.Unmarshal(pkt.Payload) != nil {
			return false
		}
		info.isVP8 = true
		info.keyFrame = info.vp8.KeyFrame
		info.pictureStart = info.vp8.Start && info.vp8.Partition == 0
		info.temporal = int8(info.vp8.TID)
		if info.keyFrame {
			st.keyFrames.Add(1)
			if w, h, ok := codecs.VP8FrameSize(pkt.Payload[info.vp8.HeaderSize:]); ok {
				st.width.Store(int32(w))
				st.height.Store(int32(h))
			}
		}
	case u.isVP9:
		v := &l.vp9
		if v.Unmarshal(pkt.Payload) != nil {
			return false
		}
		info.keyFrame = v.KeyFrame
		info.pictureStart = v.Begin && v.SID == 0
		info.layerEnd = v.End
		if u.svc {
			info.spatial = int8(min(v.SID, maxLayers-1))
			info.temporal = int8(v.TID)
			if v.HasScalability {
				n := min(v.SpatialLayers, maxLayers)
				u.svcN.Store(int32(n))
				if v.HasResolutions {
					for i := 0; i < n; i++ {
						u.stats[i].width.Store(int32(v.Widths[i]))
						u.stats[i].height.Store(int32(v.Heights[i]))
					}
				}
			}
			st = &u.stats[info.spatial]
		}
		if info.keyFrame {
			st.keyFrames.Add(1)
		}
	}
	st.measure(len(raw), !info.padding, now)

	if u.muted.Load() {
		return false
	}
	if l.cache != nil {
		l.cache.Store(pkt.SequenceNumber, raw)
	}
	if u.tap != nil {
		u.tap.Packet(u.participant, u.source, u.codec.MimeType, pkt)
	}
	return true
}

// forward writes prepared packets of one frame (or a single packet) to
// every down track; several go to each subscriber in one batch.
func (l *upLayer) forward(pkts []framePacket) {
	u := l.track
	if len(pkts) > 1 {
		evenOut(pkts)
	}
	for _, d := range *u.downs.Load() {
		if len(pkts) == 1 {
			d.writeRTP(&pkts[0].pkt, &pkts[0].info)
			continue
		}
		if !d.follows(&pkts[0].info) {
			continue
		}
		u.sends.hold()
		for i := range pkts {
			d.writeRTP(&pkts[i].pkt, &pkts[i].info)
		}
		u.sends.release()
	}
	if u.arrivals != nil {
		now := time.Now().UnixNano()
		for i := range pkts {
			if at, ok := u.arrivals.get(pkts[i].pkt.SSRC, pkts[i].pkt.SequenceNumber); ok {
				u.delay.observe(time.Duration(now - at))
			}
		}
	}
}

// maxEvenPad is the most padding evenOut adds to a packet.
const maxEvenPad = 8

// evenOut gives the packets of a frame one size on the wire, but for
// those much smaller, with RTP padding (info.pad): a GSO send takes a run
// of datagrams of one size, and Chromium's packetizer makes the packets
// of a frame differ by a byte. Receivers drop the padding before the
// depacketizer; the frame, and what E2EE protects, are unchanged.
func evenOut(pkts []framePacket) {
	size := 0
	for i := range pkts {
		size = max(size, pkts[i].wireSize())
	}
	for i := range pkts {
		p := &pkts[i]
		p.info.pad = 0
		d := size - p.wireSize()
		if d > 0 && d <= maxEvenPad && len(p.pkt.Payload) > 0 && int(p.pkt.PaddingSize)+d <= 255 {
			p.info.pad = uint8(d)
		}
	}
}

// wireSize is the packet's payload and padding, what differs between
// the packets of one stream once forwarded (their headers are the down
// track's).
func (p *framePacket) wireSize() int { return len(p.pkt.Payload) + int(p.pkt.PaddingSize) }

// measure accounts for a packet of size bytes in the layer's bitrate.
// Only media marks the layer as being sent: a publisher may pad a layer
// it has stopped encoding.
func (s *layerStats) measure(size int, media bool, now int64) {
	if media {
		s.lastSeen.Store(now)
	}
	if s.winStart == 0 || now-s.winStart > int64(2*time.Second) {
		// First packet, or the first after a pause: a window across
		// the silence would understate the layer's rate.
		s.winBytes, s.winStart = 0, now
	}
	s.winBytes += int64(size)
	if el := now - s.winStart; el >= int64(time.Second) {
		rate := s.winBytes * 8 * int64(time.Second) / el
		s.bitrate.Store(rate)
		if rate > 0 {
			s.lastRate.Store(rate)
		}
		s.winBytes, s.winStart = 0, now
	}
}

// live reports whether spatial layer s has sent packets recently.
func (u *UpTrack) live(s int, now int64) bool {
	if s < 0 || s >= maxLayers {
		return false
	}
	seen := u.stats[s].lastSeen.Load()
	return seen != 0 && now-seen < int64(liveTimeout)
}

// nominalBitrate is assumed for a layer that was never measured.
func nominalBitrate(s int) int64 {
	r := int64(150_000)
	for ; s > 0; s-- {
		r *= 3
	}
	return r
}

// layerCost is the bitrate a subscriber receives when it gets spatial
// layer s: that encoding's own rate in simulcast, the layers up to s in
// SVC.
func (u *UpTrack) layerCost(s int, now int64) int64 {
	one := func(i int) int64 {
		st := &u.stats[i]
		if u.live(i, now) {
			if r := st.bitrate.Load(); r > 0 {
				return r
			}
		}
		if r := st.lastRate.Load(); r > 0 {
			return r
		}
		return nominalBitrate(i)
	}
	if s < 0 {
		return 0
	}
	if !u.svc {
		return one(s)
	}
	var sum int64
	for i := 0; i <= s; i++ {
		sum += one(i)
	}
	return sum
}

// layerSize returns the resolution of spatial layer s: measured from key
// frames (VP8) or the scalability structure (VP9), else derived from a
// known layer assuming a factor of 2 between layers, else a guess of
// 320x180 for the lowest layer.
func (u *UpTrack) layerSize(s int) (w, h int) {
	if w, h := u.stats[s].width.Load(), u.stats[s].height.Load(); w > 0 && h > 0 {
		return int(w), int(h)
	}
	n := u.spatialLayers()
	for i := 0; i < n && i < maxLayers; i++ {
		kw, kh := int(u.stats[i].width.Load()), int(u.stats[i].height.Load())
		if kw > 0 && kh > 0 {
			for ; i < s; i++ {
				kw, kh = kw*2, kh*2
			}
			for ; i > s; i-- {
				kw, kh = kw/2, kh/2
			}
			return kw, kh
		}
	}
	w, h = 320, 180
	for i := 0; i < s; i++ {
		w, h = w*2, h*2
	}
	return w, h
}

// layerForSize is the lowest spatial layer whose resolution covers a
// rendering of width x height (within 10%), or the top layer.
func (u *UpTrack) layerForSize(width, height int) int8 {
	n := u.spatialLayers()
	for s := 0; s < n; s++ {
		w, h := u.layerSize(s)
		if w*10 >= width*9 && h*10 >= height*9 {
			return int8(s)
		}
	}
	return int8(n - 1)
}

// end stops forwarding; it is idempotent.
func (u *UpTrack) end() {
	if u.ended.Swap(true) {
		return
	}
	u.mu.Lock()
	empty := []*DownTrack{}
	u.downs.Store(&empty)
	u.mu.Unlock()
	u.dyn.stop()
	close(u.done)
}

func (u *UpTrack) addDown(d *DownTrack) {
	u.mu.Lock()
	if u.ended.Load() {
		u.mu.Unlock()
		return
	}
	old := *u.downs.Load()
	next := make([]*DownTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	u.downs.Store(&next)
	u.mu.Unlock()
	u.dyn.update() // its starting layer may be paused
}

func (u *UpTrack) removeDown(d *DownTrack) {
	u.mu.Lock()
	old := *u.downs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	u.downs.Store(&next)
	u.mu.Unlock()
	u.dyn.update()
}

// SetMuted stops (true) or resumes (false) forwarding the track, at once
// and without renegotiation: a host's mute is enforced here, not by the
// publisher's goodwill.
func (u *UpTrack) SetMuted(muted bool) {
	if u.muted.Swap(muted) && !muted {
		u.RequestKeyFrame()
	}
}

// Muted reports whether forwarding is stopped.
func (u *UpTrack) Muted() bool { return u.muted.Load() }

// RequestKeyFrame asks the publisher for a key frame on every layer,
// throttled per layer.
func (u *UpTrack) RequestKeyFrame() {
	for i := range u.layers {
		u.requestKeyFrame(int8(i))
	}
}

// requestKeyFrame asks for a key frame on the layer carrying spatial
// layer s, at most once per keyFrameInterval. A request inside the
// interval is not lost: one request is sent when the interval ends, so
// that a subscriber whose connection was not ready for the previous key
// frame still gets one promptly.
func (u *UpTrack) requestKeyFrame(s int8) {
	if u.kind != webrtc.RTPCodecTypeVideo || u.ended.Load() || s < 0 {
		return
	}
	if u.svc {
		s = 0
	}
	if int(s) >= maxLayers {
		return
	}
	l := u.layers[s].Load()
	if l == nil {
		return
	}
	now := u.clock.Now().UnixNano()
	last := l.lastKeyFrameRequest.Load()
	if wait := int64(keyFrameInterval) - (now - last); wait > 0 {
		if !l.keyFrameDeferred.Swap(true) {
			u.clock.AfterFunc(time.Duration(wait), func() {
				l.keyFrameDeferred.Store(false)
				l.sendKeyFrameRequest()
			})
		}
		return
	}
	l.sendKeyFrameRequest()
}

func (l *upLayer) sendKeyFrameRequest() {
	if l.track.ended.Load() || l.track.pc == nil {
		return
	}
	l.lastKeyFrameRequest.Store(l.track.clock.Now().UnixNano())
	_ = l.track.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
}

// takeAudioLevel returns the mean loudness (0 = silence, 127 = loudest)
// of the packets received since the previous call, and how many there
// were.
func (u *UpTrack) takeAudioLevel() (level float64, packets uint64) {
	n := u.audio.count.Swap(0)
	s := u.audio.sum.Swap(0)
	if n == 0 {
		return 0, 0
	}
	return float64(s) / float64(n), n
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
