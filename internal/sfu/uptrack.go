package sfu

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/packetcache"
)

// keyFrameInterval is the shortest time between two key frame requests sent
// to a publisher for one track, however many subscribers ask.
const keyFrameInterval = 500 * time.Millisecond

// videoCacheSize is how many packets of a video track are kept for
// retransmission: about a second of 2 Mbit/s video.
const videoCacheSize = 512

// UpTrack is one media track received from a publisher. Its packets are
// written directly, on the goroutine that reads them, to every down track.
type UpTrack struct {
	id          string
	participant string
	source      string
	mid         string
	kind        webrtc.RTPCodecType
	codec       webrtc.RTPCodecParameters
	ssrc        uint32

	remote *webrtc.TrackRemote
	pc     *webrtc.PeerConnection
	tap    Tap
	cache  *packetcache.Cache // nil for audio

	mu    sync.Mutex                   // serialises changes of downs
	downs atomic.Pointer[[]*DownTrack] // read lock-free by the forwarding loop

	lastKeyFrameRequest atomic.Int64 // unix nanoseconds
	keyFrameDeferred    atomic.Bool  // a request is scheduled for the end of the interval
	muted               atomic.Bool  // not forwarded (a host muted it)
	ended               atomic.Bool
	done                chan struct{}
}

func newUpTrack(pc *webrtc.PeerConnection, remote *webrtc.TrackRemote, participant, source, mid string) *UpTrack {
	u := &UpTrack{
		id:          participant + "-" + mid,
		participant: participant,
		source:      source,
		mid:         mid,
		kind:        remote.Kind(),
		codec:       remote.Codec(),
		ssrc:        uint32(remote.SSRC()),
		remote:      remote,
		pc:          pc,
		done:        make(chan struct{}),
	}
	if u.kind == webrtc.RTPCodecTypeVideo {
		u.cache = packetcache.New(videoCacheSize)
	}
	empty := []*DownTrack{}
	u.downs.Store(&empty)
	return u
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

// Done is closed when the track has stopped for good.
func (u *UpTrack) Done() <-chan struct{} { return u.done }

// forward reads packets until the track ends and hands each to every down
// track. It runs on its own goroutine, one per up track.
func (u *UpTrack) forward(onEnd func()) {
	defer func() {
		u.end()
		onEnd()
	}()
	buf := make([]byte, packetcache.MaxPacketSize)
	var pkt rtp.Packet
	for {
		n, _, err := u.remote.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !u.ended.Load() {
				// Closed peer connections end tracks with other errors
				// too; either way the track is over.
				_ = err
			}
			return
		}
		if u.ended.Load() || u.muted.Load() {
			continue // drained, not forwarded
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		if u.cache != nil {
			u.cache.Store(pkt.SequenceNumber, buf[:n])
		}
		if u.tap != nil {
			u.tap.Packet(u.participant, u.source, u.codec.MimeType, &pkt)
		}
		for _, d := range *u.downs.Load() {
			d.writeRTP(&pkt)
		}
	}
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
	close(u.done)
}

func (u *UpTrack) addDown(d *DownTrack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ended.Load() {
		return
	}
	old := *u.downs.Load()
	next := make([]*DownTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	u.downs.Store(&next)
}

func (u *UpTrack) removeDown(d *DownTrack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := *u.downs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	u.downs.Store(&next)
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

// RequestKeyFrame asks the publisher for a key frame, at most once per
// keyFrameInterval. A request inside the interval is not lost: one request
// is sent when the interval ends, so that a subscriber whose connection was
// not ready for the previous key frame still gets one promptly.
func (u *UpTrack) RequestKeyFrame() {
	if u.kind != webrtc.RTPCodecTypeVideo || u.ended.Load() {
		return
	}
	now := time.Now().UnixNano()
	last := u.lastKeyFrameRequest.Load()
	if wait := int64(keyFrameInterval) - (now - last); wait > 0 {
		if !u.keyFrameDeferred.Swap(true) {
			time.AfterFunc(time.Duration(wait), func() {
				u.keyFrameDeferred.Store(false)
				u.sendKeyFrameRequest()
			})
		}
		return
	}
	u.sendKeyFrameRequest()
}

func (u *UpTrack) sendKeyFrameRequest() {
	if u.ended.Load() {
		return
	}
	u.lastKeyFrameRequest.Store(time.Now().UnixNano())
	_ = u.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: u.ssrc}})
}
