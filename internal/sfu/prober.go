package sfu

import (
	"sync"
	"time"
)

// Bandwidth probing. When a subscriber's allocator wants more than the
// estimate covers while the subscriber receives well under the estimate
// (the estimate is application-limited: GCC cannot see capacity that is
// not used), the prober sends a short cluster of padding-only packets on
// one of the subscriber's video down tracks, bringing the total rate to
// the wanted rate plus a margin. The probe meter measures the rate at
// which the cluster arrived; if it reaches the wanted rate, the allocator
// upgrades at once. A failed probe backs off: the next one waits twice as
// long, up to probeIntervalMax (short enough that a subscriber climbs back
// within seconds when a bottleneck goes away).
const (
	probeDuration    = 300 * time.Millisecond
	probeTick        = 10 * time.Millisecond
	probeMargin      = 1.25 // probe at the wanted rate times this
	probeMaxFactor   = 8    // and at most this times the current estimate
	probeIntervalMin = 2 * time.Second
	probeIntervalMax = 8 * time.Second
	// paddingSize is the padding of one probe packet (the most RTP
	// padding can say); paddingWire is its size as the meter counts it,
	// with the RTP header and the transport-wide sequence number.
	paddingSize     = 255
	paddingWire     = paddingSize + 12 + 8
	maxPadsPerTick  = 32
	appLimitedRatio = 0.9 // "receives well under the estimate"
)

// padder sends padding between frames; DownTrack implements it.
type padder interface {
	writePadding(n int, size uint8, now int64) int
}

type probeState uint8

const (
	probeIdle    probeState = iota
	probeSending            // the cluster is being sent
	probeWaiting            // sent, waiting for the feedback
)

// prober runs one subscriber's probes. Its clock is passed in; tick is
// driven by the subscriber's probe goroutine (or a test).
type prober struct {
	meter    *probeMeter
	onResult func() // called after a result, e.g. to run the allocator

	mu        sync.Mutex
	state     probeState
	id        uint32
	goal      int64 // bits per second the cluster must show
	padRate   int64 // bits per second of padding
	start     time.Time
	padBits   int64
	pad       padder
	interval  time.Duration
	next      time.Time // earliest start of the next probe
	waitUntil time.Time
	confirmed int64 // rate of the last successful probe, until taken
	last      clusterResult
}

func newProber(m *probeMeter, onResult func()) *prober {
	p := &prober{meter: m, onResult: onResult, interval: probeIntervalMin}
	if m != nil {
		m.done = p.result
	}
	return p
}

// ready reports whether a probe may start now.
func (p *prober) ready(now time.Time) bool {
	if p == nil || p.meter == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == probeIdle && !now.Before(p.next)
}

// begin starts a cluster that should show goal bits per second, padding
// on pad over the current rate (what the subscriber receives now). It
// returns false if a probe cannot start.
func (p *prober) begin(now time.Time, pad padder, goal, current int64) bool {
	if p == nil || p.meter == nil || pad == nil {
		return false
	}
	p.mu.Lock()
	if p.state != probeIdle || now.Before(p.next) {
		p.mu.Unlock()
		return false
	}
	target := int64(float64(goal) * probeMargin)
	p.id++
	p.state, p.goal, p.padRate = probeSending, goal, max(target-current, 0)
	p.start, p.padBits, p.pad = now, 0, pad
	id := p.id
	p.mu.Unlock()
	p.meter.begin(id)
	return true
}

// tick sends the padding due by now and reports whether the cluster
// goes on (the caller then ticks again after probeTick).
func (p *prober) tick(now time.Time) bool {
	p.mu.Lock()
	if p.state != probeSending {
		p.mu.Unlock()
		return false
	}
	elapsed := min(now.Sub(p.start), probeDuration)
	owed := p.padRate*int64(elapsed)/int64(time.Second) - p.padBits
	if n := min(int(owed/(paddingWire*8)), maxPadsPerTick); n > 0 {
		sent := p.pad.writePadding(n, paddingSize, now.UnixNano())
		p.padBits += int64(sent) * paddingWire * 8
	}
	if now.Sub(p.start) < probeDuration {
		p.mu.Unlock()
		return true
	}
	p.state = probeWaiting
	p.waitUntil = now.Add(clusterFeedbackWait)
	p.pad = nil
	p.mu.Unlock()
	p.meter.end(now.UnixNano()) // may deliver the result at once
	return false
}

// expire ends a wait for feedback that did not come.
func (p *prober) expire(now time.Time) {
	if p == nil || p.meter == nil {
		return
	}
	p.mu.Lock()
	waiting := p.state == probeWaiting && !now.Before(p.waitUntil)
	p.mu.Unlock()
	if waiting {
		p.meter.expire(now.UnixNano())
	}
}

// result takes the meter's verdict on a cluster.
func (p *prober) result(r clusterResult) {
	p.mu.Lock()
	if p.state != probeWaiting || r.cluster != p.id {
		p.mu.Unlock()
		return
	}
	p.state = probeIdle
	p.last = r
	now := p.waitUntil.Add(-clusterFeedbackWait) // the cluster's end
	if r.rate >= p.goal {
		p.confirmed = r.rate
		p.interval = probeIntervalMin
	} else {
		p.interval = min(2*p.interval, probeIntervalMax)
	}
	p.next = now.Add(p.interval)
	cb := p.onResult
	p.mu.Unlock()
	if cb != nil {
		cb()
	}
}

// takeConfirmed returns the rate a probe confirmed since the last call,
// or 0.
func (p *prober) takeConfirmed() int64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.confirmed
	p.confirmed = 0
	return c
}

// holdOff delays the next probe by the current interval from now: the
// link showed congestion.
func (p *prober) holdOff(now time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.next = now.Add(p.interval)
	p.mu.Unlock()
}

// bandwidth combines the subscriber's GCC estimate with what probes
// confirmed. A confirmed rate (the floor) stands until the link shows
// congestion: loss, or a GCC decrease to well under what is being sent
// (GCC decreases to 0.85 times the acknowledged rate, so a fall below
// congestionRatio times the sent rate means the link delivers less than
// it is given). While the link delivers what it is given, the floor
// follows the sent rate up, so that keeping the layers it carries needs
// no new probe.
type bandwidth struct {
	floor       int64
	prevGCC     int64
	congestedAt time.Time
}

const (
	congestionRatio = 0.75
	congestionLoss  = 0.1
	floorOverSent   = 1.15 // keeps a fully used floor "application-limited"
)

// update takes one allocation round's inputs and returns the budget.
func (b *bandwidth) update(now time.Time, gcc int64, loss float64, sent, confirmed int64) int64 {
	decreased := b.prevGCC > 0 && gcc < b.prevGCC
	b.prevGCC = gcc
	if loss > congestionLoss || decreased && float64(gcc) < congestionRatio*float64(sent) {
		b.floor = 0
		b.congestedAt = now
	} else if b.floor > 0 {
		b.floor = max(b.floor, int64(floorOverSent*float64(sent)))
	}
	if confirmed > 0 {
		b.floor = max(b.floor, confirmed)
	}
	return max(gcc, b.floor)
}
