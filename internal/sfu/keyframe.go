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
// to a publisher for one layer of a track, however many subscribers ask.
const keyFrameInterval = 500 * time.Millisecond

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
	if l.track.ended.Load() {
		return
	}
	if f := l.track.keyFrames; f != nil {
		l.lastKeyFrameRequest.Store(l.track.clock.Now().UnixNano())
		f(int(l.index))
		return
	}
	if l.track.pc == nil {
		return
	}
	l.lastKeyFrameRequest.Store(l.track.clock.Now().UnixNano())
	_ = l.track.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
}
