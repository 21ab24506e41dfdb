package sfu

import (
	"math"
	"sync"
	"time"
)

// The send-side bandwidth estimator of a subscriber on the server's own
// send path (sendpath.go), in place of Pion's GCC interceptor. It is
// shaped for an SFU: what it sends is application-limited almost always
// (the allocator sends the layers it chose, not as much as the link
// takes), so the estimate is held where the link has been shown to carry,
// and raised by the allocator's probes (prober.go, probemeter.go) rather
// than by sending more media to find out. It has two parts, as GCC and
// LiveKit's and mediasoup's estimators do:
//
//   - delay-based: the transport-cc feedback gives each packet's arrival
//     time; packets are grouped by send time (bursts of groupSpan), and
//     the growth of one-way delay between groups is smoothed and fitted
//     by a least-squares line over the last trendWindow groups. A slope
//     above an adaptive threshold (RFC 8698-like, the threshold follows
//     the slope's magnitude slowly) held for overuseTime means a queue
//     is building: the estimate drops to backoff times what arrived.
//     Without overuse the estimate grows by growthPerSecond, but never
//     above maxOverAcked times what the link was seen to deliver.
//   - loss-based: the share of packets the feedback reports lost, over
//     each feedback, smoothed; above lossHigh the estimate falls in
//     proportion, under lossLow it may grow.
//
// Everything is fed from the RTCP reader (the media socket's goroutine)
// and read by the allocator: a mutex, no allocation.
type estimator struct {
	mu sync.Mutex

	target int64 // bits per second
	min    int64
	max    int64

	// delay-based
	groupFirstSent int64 // the current group: first packet's send time, ns
	groupLastSent  int64
	groupLastArr   int64 // µs
	groupOpen      bool
	prevSent       int64 // the previous group's last send time, ns
	prevArr        int64 // and arrival, µs
	havePrev       bool
	accDelay       float64 // ms
	smoothDelay    float64 // ms
	trend          [trendWindow]trendPoint
	trendN         int
	trendI         int
	threshold      float64 // ms, adaptive
	overSince      int64   // when the slope first went over, ns; 0 none
	lastSlope      float64
	lastDecrease   int64 // ns
	lastUpdate     int64 // ns

	// acknowledged rate: bytes that arrived in the current window
	ackBytes int64
	ackFirst int64 // µs
	ackLast  int64
	acked    int64 // bits per second of the last window taken

	// loss-based
	loss float64 // smoothed share lost
}

type trendPoint struct{ x, y float64 } // arrival ms, smoothed delay ms

const (
	groupSpan       = 5 * time.Millisecond // packets sent within it form one group
	trendWindow     = 20                   // groups fitted
	trendGain       = 4.0                  // the slope's weight (per RFC 8698's trendline filter)
	smoothing       = 0.9
	thresholdStart  = 12.5 // ms
	thresholdMin    = 6.0
	thresholdMax    = 600.0
	kUp             = 0.0087
	kDown           = 0.039
	overuseTime     = 30 * time.Millisecond // held this long before it counts
	backoff         = 0.85
	growthPerSecond = 0.08
	maxOverAcked    = 1.5
	ackWindow       = 500 * time.Millisecond // µs scale below
	lossHigh        = 0.10
	lossLow         = 0.02
	lossSmoothing   = 0.7 // weight of the previous value
)

func newEstimator(initial, min, max int64) *estimator {
	return &estimator{target: initial, min: min, max: max, threshold: thresholdStart}
}

// feedbackStart begins one feedback report.
func (e *estimator) feedbackStart() {
	e.mu.Lock()
}

// packet notes one packet of the report: when and how large it was sent,
// and whether and when (µs, feedback's clock) it arrived.
func (e *estimator) packet(sent int64, size int, received bool, arrival int64) {
	if !received {
		return
	}
	// Acknowledged rate.
	if e.ackBytes == 0 || arrival < e.ackFirst {
		e.ackFirst = arrival
	}
	if arrival > e.ackLast {
		e.ackLast = arrival
	}
	e.ackBytes += int64(size)
	if e.ackLast-e.ackFirst >= int64(ackWindow/time.Microsecond) {
		e.acked = e.ackBytes * 8 * 1_000_000 / (e.ackLast - e.ackFirst)
		e.ackBytes, e.ackFirst, e.ackLast = 0, 0, 0
	}
	// Groups by send time.
	if !e.groupOpen {
		e.groupFirstSent, e.groupLastSent, e.groupLastArr, e.groupOpen = sent, sent, arrival, true
		return
	}
	if sent-e.groupFirstSent <= int64(groupSpan) {
		e.groupLastSent = max(e.groupLastSent, sent)
		e.groupLastArr = max(e.groupLastArr, arrival)
		return
	}
	if sent < e.groupFirstSent {
		return // reordered: belongs to an earlier group
	}
	e.closeGroup()
	e.groupFirstSent, e.groupLastSent, e.groupLastArr = sent, sent, arrival
}

// closeGroup adds the finished group's delay variation to the trend.
func (e *estimator) closeGroup() {
	if !e.havePrev {
		e.prevSent, e.prevArr, e.havePrev = e.groupLastSent, e.groupLastArr, true
		return
	}
	sendDelta := float64(e.groupLastSent-e.prevSent) / 1e6 // ms
	arrDelta := float64(e.groupLastArr-e.prevArr) / 1e3
	e.prevSent, e.prevArr = e.groupLastSent, e.groupLastArr
	e.accDelay += arrDelta - sendDelta
	e.smoothDelay = smoothing*e.smoothDelay + (1-smoothing)*e.accDelay
	e.trend[e.trendI] = trendPoint{x: float64(e.groupLastArr) / 1e3, y: e.smoothDelay}
	e.trendI = (e.trendI + 1) % trendWindow
	if e.trendN < trendWindow {
		e.trendN++
	}
}

// slope is the least-squares slope of the trend's points.
func (e *estimator) slope() (float64, bool) {
	if e.trendN < trendWindow/2 {
		return 0, false
	}
	var sx, sy float64
	for i := 0; i < e.trendN; i++ {
		sx += e.trend[i].x
		sy += e.trend[i].y
	}
	mx, my := sx/float64(e.trendN), sy/float64(e.trendN)
	var num, den float64
	for i := 0; i < e.trendN; i++ {
		dx := e.trend[i].x - mx
		num += dx * (e.trend[i].y - my)
		den += dx * dx
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

// feedbackEnd ends the report: lost and total are its packets, now the
// time it was read. The estimate is updated.
func (e *estimator) feedbackEnd(lost, total int, now int64) {
	defer e.mu.Unlock()
	if total > 0 {
		e.loss = lossSmoothing*e.loss + (1-lossSmoothing)*float64(lost)/float64(total)
	}
	dt := float64(int64(time.Second))
	if e.lastUpdate != 0 {
		dt = float64(now - e.lastUpdate)
	}
	e.lastUpdate = now
	over := false
	if s, ok := e.slope(); ok {
		// The modified trend (RFC 8698's trendline filter) in ms.
		m := s * float64(min(e.trendN, 60)) * trendGain
		if m > e.threshold {
			if e.overSince == 0 {
				e.overSince = now
			}
			over = now-e.overSince >= int64(overuseTime) && s >= e.lastSlope
		} else {
			e.overSince = 0
		}
		e.lastSlope = s
		// The threshold follows |m| slowly (fast downwards).
		k := kDown
		if math.Abs(m) > e.threshold {
			k = kUp
		}
		if math.Abs(m) < e.threshold+15 {
			e.threshold += k * (math.Abs(m) - e.threshold) * min(dt/1e6, 100)
			e.threshold = math.Max(thresholdMin, math.Min(thresholdMax, e.threshold))
		}
	}
	t := e.target
	switch {
	case over && now-e.lastDecrease > int64(200*time.Millisecond):
		base := e.acked
		if base == 0 {
			base = t
		}
		t = min(t, int64(backoff*float64(base)))
		e.lastDecrease = now
		e.overSince = 0
	case !over:
		grown := int64(float64(t) * (1 + growthPerSecond*dt/1e9))
		if e.acked > 0 {
			grown = min(grown, max(t, int64(maxOverAcked*float64(e.acked))))
		}
		t = grown
	}
	if e.loss > lossHigh {
		t = min(t, int64(float64(e.target)*(1-0.5*e.loss)))
	} else if e.loss > lossLow {
		t = min(t, e.target) // hold
	}
	e.target = max(e.min, min(e.max, t))
}

// probed raises the estimate to what a probe showed the link carries.
func (e *estimator) probed(rate int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rate > e.target && e.loss < lossLow {
		e.target = max(e.min, min(e.max, rate))
	}
}

// GetTargetBitrate is the estimate, bits per second (the method name is
// that of Pion's estimators, which the allocator also reads).
func (e *estimator) GetTargetBitrate() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return int(e.target)
}

// lossRate is the smoothed share of packets lost.
func (e *estimator) lossRate() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loss
}
