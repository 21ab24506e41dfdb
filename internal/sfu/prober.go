package sfu

import (
	"sync"
	"time"
)

// Bandwidth probing. When a subscriber's allocator wants more than the
// estimate covers (GCC cannot see capacity that is not used), the prober
// sends a short cluster of padding-only packets on one of the
// subscriber's video down tracks, bringing the total rate, as the meter
// counts what is sent, to the wanted rate plus a margin. The probe meter
// measures the rate at which the cluster arrived; if it reaches the
// wanted rate, the allocator upgrades at once. A failed probe (sent at
// the wanted rate, arrived slower or with loss) backs off: the next one
// waits twice as long, up to probeIntervalMax (short enough that a
// subscriber climbs back within seconds when a bottleneck goes away). A
// probe that could not be sent at the wanted rate (a busy machine) says
// nothing about the link and does not back off. A tile that grows is
// probed for at once (expedite), whatever the interval.
//
// Probes do not wait for the subscriber to receive well under its
// estimate (to be application-limited): GCC's estimate of a sender that
// has no more to send hovers around what arrives (it falls to 0.85 times
// that on any rise of its delay gradient, which a busy machine's
// scheduling produces as readily as a queue, and rises to at most 1.5
// times that), so on a loaded server a subscriber whose link has room
// would seldom count as application-limited, and would stay on a low
// layer. Loss, congestion and failed probes hold probes off.
const (
	probeDuration    = 300 * time.Millisecond
	probeTick        = 10 * time.Millisecond
	probeMargin      = 1.25 // probe at the wanted rate times this
	probeMaxFactor   = 8    // and at most this times the current estimate
	probeIntervalMin = 2 * time.Second
	probeIntervalMax = 4 * time.Second
	// paddingSize is the padding of one probe packet (the most RTP
	// padding can say); paddingWire is its size as the meter counts it,
	// with the RTP header and the transport-wide sequence number.
	paddingSize    = 255
	paddingWire    = paddingSize + 12 + 8
	maxPadsPerTick = 32
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
	rate      int64 // bits per second to send: goal times the margin
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

// expedite lets the next probe start now: the subscriber wants more
// than before (a tile grew).
func (p *prober) expedite() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.next = time.Time{}
	p.mu.Unlock()
}

// begin starts a cluster that should show goal bits per second, padding
// on pad what the connection's media leaves. It returns false if a probe
// cannot start.
func (p *prober) begin(now time.Time, pad padder, goal int64) bool {
	if p == nil || p.meter == nil || pad == nil {
		return false
	}
	p.mu.Lock()
	if p.state != probeIdle || now.Before(p.next) {
		p.mu.Unlock()
		return false
	}
	p.id++
	p.state, p.goal, p.rate = probeSending, goal, int64(float64(goal)*probeMargin)
	p.start, p.padBits, p.pad = now, 0, pad
	id := p.id
	p.mu.Unlock()
	p.meter.begin(id)
	return true
}

// tick sends the padding due by now and reports whether the cluster
// goes on (the caller then ticks again after probeTick). What is due is
// the cluster's rate over the time elapsed, less what the meter counted
// sent since the cluster began, media and padding (or less the padding
// alone, if the meter counted less): the media's own rate varies from
// one moment to the next, and the cluster must show the rate whatever it
// does.
func (p *prober) tick(now time.Time) bool {
	p.mu.Lock()
	if p.state != probeSending {
		p.mu.Unlock()
		return false
	}
	elapsed := min(now.Sub(p.start), probeDuration)
	owed := p.rate*int64(elapsed)/int64(time.Second) - max(p.padBits, p.meter.sentBits())
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
	switch {
	case r.rate >= p.goal:
		p.confirmed = r.rate
		p.interval = probeIntervalMin
		p.next = now.Add(p.interval)
	case r.lossy() || r.send >= p.goal:
		// The link lost it or delivered it slower: back off.
		p.interval = min(2*p.interval, probeIntervalMax)
		p.next = now.Add(p.interval)
	default:
		// Not sent at the goal: nothing learnt about the link.
		p.next = now.Add(probeIntervalMin)
	}
	cb := p.onResult
	p.mu.Unlock()
	if cb != nil {
		cb()
	}
}

// window returns the meter's delivery window since the last call.
func (p *prober) window() delivery {
	if p == nil || p.meter == nil {
		return delivery{}
	}
	return p.meter.takeWindow()
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
// congestion, as the probe meter's window measures it: loss, or packets
// arriving markedly slower than they were sent (under congestionRatio
// times). GCC's own decreases are not taken as congestion: GCC falls to
// 0.85 times what it last saw arrive on any rise of its delay gradient,
// which the scheduling noise of a busy machine produces as readily as a
// queue does. While the link delivers what it is given, the floor
// follows the sent rate up, so that keeping the layers it carries needs
// no new probe.
type bandwidth struct {
	floor       int64
	congestedAt time.Time
}

const (
	congestionRatio = 0.75
	congestionLoss  = 0.1
	floorOverSent   = 1.15 // keeps a fully used floor "application-limited"
)

// update takes one allocation round's inputs (win: the probe meter's
// window since the previous round) and returns the budget.
func (b *bandwidth) update(now time.Time, gcc int64, win delivery, sent, confirmed int64) int64 {
	lossy := win.packets >= windowMinPackets && win.loss > congestionLoss
	if lossy || win.congested(congestionRatio) {
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
