// Key frame requests: a subscriber that starts, switches layer or lost
// its decoder's state needs a key frame; the publisher is asked, per
// layer, at most once per keyFrameInterval whoever asks.

package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// keyFrameInterval is the shortest time between two key frame requests sent
// to a publisher for one layer of a track, however many subscribers ask,
// while the first is unanswered; keyFrameAnsweredGap the shortest once a
// key frame has come since. A subscriber whose connection came up just
// after a key frame then waits for the next one about keyFrameAnsweredGap
// instead of up to keyFrameInterval (a join's first picture), and a burst
// of joins still makes at most one request per keyFrameAnsweredGap.
const (
	keyFrameInterval    = 500 * time.Millisecond
	keyFrameAnsweredGap = 150 * time.Millisecond
)

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
	gap := keyFrameInterval
	if l.lastKeyFrame.Load() >= last {
		gap = keyFrameAnsweredGap // the last request was answered
	}
	if wait := int64(gap) - (now - last); wait > 0 {
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

// keyFrameArrived notes a key frame of the layer: the request before it
// was answered.
func (l *upLayer) keyFrameArrived() {
	l.lastKeyFrame.Store(l.track.clock.Now().UnixNano())
}

func (l *upLayer) sendKeyFrameRequest() {
	if l.track.ended.Load() {
		return
	}
	l.lastKeyFrameRequest.Store(l.track.clock.Now().UnixNano())
	l.keyFrameRequests.Add(1)
	if f := l.track.keyFrames; f != nil {
		f(int(l.index)) // a track relayed from another node (relay.go)
		return
	}
	if l.track.pc == nil {
		return // a test's track
	}
	_ = l.track.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
}
