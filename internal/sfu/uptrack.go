package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/codecs"
	"conclave/internal/conn"
	"conclave/internal/packetcache"
	"conclave/internal/sfu/mediasock"
)

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

// UpTrack is one logical media track received from a publisher (a
// conn.UpTrack): a (participant, source) with one or more layers. A
// simulcast video track has one layer per RID, each with its own SSRC, packet cache and bitrate;
// a VP9 SVC track has one RTP stream whose spatial layers are read from
// the payload descriptor; anything else has a single layer. Packets are
// written, on the goroutine that reads them, to every down track: video a
// frame at a time (readFrames), audio as each packet comes.
type UpTrack struct {
	id          string
	participant string
	source      conn.Source
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
	sock  mediaSocket // nil: no batching, no delay measured (unit tests)
	audio struct {
		ext   uint8         // id of the audio-level header extension, 0 if absent
		sum   atomic.Uint64 // sum of (127 - level) since the last read
		count atomic.Uint64
	}

	layers [maxLayers]atomic.Pointer[upLayer] // by layer index (simulcast)
	stats  [maxLayers]layerStats              // by spatial layer
	svcN   atomic.Int32                       // spatial layers announced by VP9 SS

	mu      sync.Mutex                   // serialises changes of downs, taps, readers
	downs   atomic.Pointer[[]*DownTrack] // read lock-free by the forwarding loops
	taps    atomic.Pointer[[]*relayTap]  // relays to other nodes (relay.go)
	readers int                          // layers whose read loop runs

	// keyFrames, for a track relayed from another node, asks that node
	// for key frames instead of a publisher (relay.go).
	keyFrames func(layer int)

	dyn dynacast

	// Sinks in this process (conn.SinkTrack): called on the forwarding
	// goroutine under sinkMu's read lock, so that RemoveSink can wait.
	sinkMu sync.RWMutex
	sinks  atomic.Pointer[[]conn.Sink]

	muted atomic.Bool // not forwarded (a host muted it)
	ended atomic.Bool
	done  chan struct{}
}

// upLayer is one received RTP stream of an up track.
type upLayer struct {
	track  *UpTrack
	index  int8
	rid    string
	remote *webrtc.TrackRemote
	ssrc   uint32
	cache  *packetcache.Cache // nil for audio

	lastKeyFrameRequest atomic.Int64 // unix nanoseconds (the track's clock)
	lastKeyFrame        atomic.Int64 // when a key frame last arrived, likewise
	keyFrameDeferred    atomic.Bool
	keyFrameRequests    atomic.Uint64 // sent to the publisher

	single [1]framePacket // reused for every packet forwarded alone
	// batch holds one subscriber's share of a frame on the own send
	// path (sendpath.go), encrypted in place; the layer's reader
	// goroutine only.
	batch mediasock.Batch
	vp9   codecs.VP9 // parsing scratch
}

func newUpTrack(pc *webrtc.PeerConnection, clk clock.Clock, codec webrtc.RTPCodecParameters, kind webrtc.RTPCodecType, participant string, source conn.Source, mid string, rids []string) *UpTrack {
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
	noTaps := []*relayTap{}
	u.taps.Store(&noTaps)
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

// Source is what the publisher declared the track carries.
func (u *UpTrack) Source() conn.Source { return u.source }

// Kind is audio or video.
func (u *UpTrack) Kind() conn.Kind { return conn.Kind(u.kind.String()) }

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

// end stops forwarding; it is idempotent.
func (u *UpTrack) end() {
	if u.ended.Swap(true) {
		return
	}
	u.mu.Lock()
	empty := []*DownTrack{}
	u.downs.Store(&empty)
	noTaps := []*relayTap{}
	u.taps.Store(&noTaps)
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

// AddSink starts handing the track's packets to s (conn.SinkTrack).
func (u *UpTrack) AddSink(s conn.Sink) {
	u.sinkMu.Lock()
	defer u.sinkMu.Unlock()
	var next []conn.Sink
	if old := u.sinks.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, s)
	u.sinks.Store(&next)
}

// RemoveSink stops handing packets to s; s is not called after it
// returns.
func (u *UpTrack) RemoveSink(s conn.Sink) {
	u.sinkMu.Lock()
	defer u.sinkMu.Unlock()
	old := u.sinks.Load()
	if old == nil {
		return
	}
	next := make([]conn.Sink, 0, len(*old))
	for _, x := range *old {
		if x != s {
			next = append(next, x)
		}
	}
	u.sinks.Store(&next)
}

// toSinks hands forwarded packets to the sinks, if any.
func (u *UpTrack) toSinks(pkts []framePacket) {
	if p := u.sinks.Load(); p == nil || len(*p) == 0 {
		return
	}
	u.sinkMu.RLock()
	for _, s := range *u.sinks.Load() {
		for i := range pkts {
			s.WriteRTP(pkts[i].raw)
		}
	}
	u.sinkMu.RUnlock()
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

// AudioLevel returns the mean loudness (0 = silence, 127 = loudest) of the
// packets received since the previous call, and how many there were. The
// level is the publisher's audio-level header extension (RFC 6464), which
// SFrame leaves in the clear: metadata the room needs to find who speaks.
func (u *UpTrack) AudioLevel() (level float64, packets uint64) {
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
