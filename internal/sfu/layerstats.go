// What an up track knows of each of its spatial layers: bitrate, size,
// liveness; and what a subscriber's allocator derives from it (the cost
// and the size of a layer, the layer that fits a rendering).

package sfu

import (
	"sync/atomic"
	"time"
)

// liveTimeout is how long a layer may stay silent and still count as
// being sent.
const liveTimeout = 1500 * time.Millisecond

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

// spatialLayers is the number of layers a selector can choose from.
func (u *UpTrack) spatialLayers() int {
	if u.svc {
		return int(u.svcN.Load())
	}
	return u.Layers()
}

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
