package sfu

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"

	"conclave/internal/clock"
)

// Stream allocation policy. The allocator of a subscriber runs every
// allocateInterval (and at once when the subscriber reports a new layout).
// It distributes the subscriber's estimated bandwidth over its video
// tracks in priority order (the room's conn.TrackOptions.Priority: it
// puts a screen share first, then the active speaker), then by rendered
// area: first the lowest layer for every visible
// track, then upgrades toward the layer that fits each track's rendered
// size. Downgrades are immediate. Upgrades are cautious: only with
// upgradeHeadroom of spare estimate, not within upgradeHold of a
// downgrade caused by bandwidth, and one layer per track per round,
// except right after the track's size grew (a tile put in full screen
// goes straight to the layer the estimate allows: passing through the
// layers between would resume each at the publisher in turn). When the
// estimate does not cover what the tracks' sizes want, the allocator
// probes (prober.go): a cluster of padding brings the subscriber's rate
// to what is wanted, and if the link carries it, the next round upgrades
// straight to the wanted layers (the probe is the evidence that one step
// at a time and the hold stand in for). A track whose size grew is
// probed at once. While an upgrade waits for a layer the publisher has
// paused (dynacast resumes it, from the size alone, before the bandwidth
// allows it), rounds come every pendingInterval.
const (
	allocateInterval = 500 * time.Millisecond
	pendingInterval  = 100 * time.Millisecond
	upgradeHeadroom  = 0.85
	upgradeHold      = 4 * time.Second
	// probeLossLimit: no probe while GCC sees more loss than this.
	probeLossLimit = 0.02
)

// allocTrack is the allocator's view of one video down track.
type allocTrack struct {
	d        *DownTrack
	priority int  // higher first
	area     int  // rendered pixels
	max      int8 // best layer for the rendered size; -1 hidden
	layer    int8 // allocated layer
	prev     int8 // previously allocated layer
	grew     bool // max is higher than in the previous round
	costs    [maxLayers]int64
}

// allocState is per down track state kept between rounds.
type allocState struct {
	lastDowngrade time.Time
	max           int8 // the track's max in the previous round
}

// allocate runs one round for the given down tracks with budget bits per
// second (0 or less: unknown, no limit). It sets the layer of each track.
// state is updated. probed means that a probe just confirmed the budget:
// upgrades may then take several steps at once and ignore the hold.
func allocate(tracks []allocTrack, budget int64, now time.Time, state map[*DownTrack]*allocState, probed bool) {
	order := make([]int, len(tracks))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ta, tb := &tracks[a], &tracks[b]
		if ta.priority != tb.priority {
			return tb.priority - ta.priority
		}
		return tb.area - ta.area
	})
	unlimited := budget <= 0
	var used int64
	for _, i := range order {
		t := &tracks[i]
		t.layer = -1
		if t.max >= 0 {
			t.layer = 0
			used += t.costs[0]
		}
	}
	for _, i := range order {
		t := &tracks[i]
		if t.max < 0 {
			continue
		}
		st := state[t.d]
		for t.layer < t.max {
			next := t.layer + 1
			extra := t.costs[next] - t.costs[t.layer]
			if next <= t.prev {
				// Keeping what it had: the estimate must cover it.
				if !unlimited && used+extra > budget {
					break
				}
			} else {
				// An upgrade: with headroom, not right after a
				// downgrade, and one step per round unless the size
				// just grew.
				if !probed && !t.grew && next > t.prev+1 && t.prev >= 0 {
					break
				}
				if !unlimited && float64(used+extra) > upgradeHeadroom*float64(budget) {
					break
				}
				if !probed && st != nil && now.Sub(st.lastDowngrade) < upgradeHold {
					break
				}
			}
			used += extra
			t.layer = next
		}
		if t.prev >= 0 && t.layer >= 0 && t.layer < t.prev && t.layer < t.max {
			// Lower than before though the size wants more: bandwidth.
			if st == nil {
				st = &allocState{}
				state[t.d] = st
			}
			st.lastDowngrade = now
		}
	}
}

// allocator shares one subscriber's estimated bandwidth among its video
// down tracks: a round every allocateInterval, or at once when kicked (a
// new layout, a probe's result), more often while an upgrade waits for a
// paused layer. Its subscriber owns it; it reads the subscriber's down
// tracks through downs.
type allocator struct {
	clock clock.Clock
	bwe   cc.BandwidthEstimator // nil without transport-cc
	probe *prober               // nil without transport-cc
	downs func() []*DownTrack   // the subscriber's down tracks now
	quit  chan struct{}
	kick  chan struct{}
	halt  func() // stops the periodic rounds

	mu     sync.Mutex // guards state and bw
	state  map[*DownTrack]*allocState
	bw     bandwidth
	budget atomic.Int64 // the latest round's estimate, bits per second
	soon   atomic.Bool  // a round is scheduled within pendingInterval
	// own is the own send path's estimator once the subscriber is on
	// it (sendpath.go): it replaces bwe.
	own atomic.Pointer[estimator]
}

// newAllocator makes a subscriber's allocator; start runs it. bwe and
// meter are the subscriber connection's estimator and probe meter (nil
// without transport-cc).
func newAllocator(clk clock.Clock, bwe cc.BandwidthEstimator, meter *probeMeter, downs func() []*DownTrack) *allocator {
	a := &allocator{clock: clock.Or(clk), bwe: bwe, downs: downs, quit: make(chan struct{}), kick: make(chan struct{}, 1),
		state: map[*DownTrack]*allocState{}}
	if meter != nil {
		a.probe = newProber(meter, a.kickNow)
	}
	return a
}

// start runs the allocation loop until stop.
func (a *allocator) start() {
	a.halt = clock.Every(a.clock, allocateInterval, a.kickNow)
	go a.run()
}

// stop ends the loop and any probe.
func (a *allocator) stop() {
	if a.halt != nil {
		a.halt()
	}
	close(a.quit)
}

// kickNow runs a round soon.
func (a *allocator) kickNow() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// forget drops what the allocator kept of a down track that is gone.
func (a *allocator) forget(d *DownTrack) {
	a.mu.Lock()
	delete(a.state, d)
	a.mu.Unlock()
}

// grown tells the allocator that a track is shown larger than before:
// the next probe may start at once.
func (a *allocator) grown() { a.probe.expedite() }

// estimate is the subscriber's estimated bandwidth in bits per second
// (GCC's, or more where a probe confirmed more), 0 when unknown.
func (a *allocator) estimate() int {
	if b := a.budget.Load(); b > 0 {
		return int(b)
	}
	if e := a.own.Load(); e != nil {
		return e.GetTargetBitrate()
	}
	if a.bwe == nil {
		return 0
	}
	return a.bwe.GetTargetBitrate()
}

// run is the allocation loop.
func (a *allocator) run() {
	for {
		select {
		case <-a.quit:
			return
		case <-a.kick:
		}
		if a.round(a.clock.Now()) && !a.soon.Swap(true) {
			a.clock.AfterFunc(pendingInterval, func() {
				a.soon.Store(false)
				a.kickNow()
			})
		}
	}
}

// round runs one allocation round over the subscriber's tracks, and
// starts a probe when one is wanted. It reports whether an upgrade waits
// for a paused layer.
func (a *allocator) round(now time.Time) (pending bool) {
	downs := a.downs()
	var gcc int64
	var loss float64
	if e := a.own.Load(); e != nil {
		gcc, loss = int64(e.GetTargetBitrate()), e.lossRate() // the own path's estimator (estimator.go)
	} else if a.bwe != nil {
		gcc = int64(a.bwe.GetTargetBitrate())
		if l, ok := a.bwe.GetStats()["averageLoss"].(float64); ok {
			loss = l
		}
	}
	a.probe.expire(now)
	nowNS := now.UnixNano()
	tracks := make([]allocTrack, 0, len(downs))
	var other, sent int64 // audio; what is being forwarded
	for _, d := range downs {
		u := d.up
		if u.kind.String() != "video" {
			other += u.layerCost(0, nowNS)
			continue
		}
		if cur := d.cur.Load(); cur >= 0 {
			sent += u.layerCost(int(cur), nowNS)
		}
		t := allocTrack{d: d, priority: int(d.priority.Load()), prev: int8(d.desired.Load())}
		n := u.spatialLayers()
		w, h := int(d.width.Load()), int(d.height.Load())
		switch {
		case w == 0 || h == 0:
			t.max = -1
		case w < 0 || h < 0:
			t.max = int8(n - 1) // size not reported: no limit
		default:
			t.max = u.layerForSize(w, h)
			t.area = w * h
		}
		for l := 0; l < n; l++ {
			t.costs[l] = u.layerCost(l, nowNS)
		}
		tracks = append(tracks, t)
	}
	sent += other

	a.mu.Lock()
	for i := range tracks {
		t := &tracks[i]
		st := a.state[t.d]
		if st == nil {
			st = &allocState{max: -1}
			a.state[t.d] = st
		}
		t.grew = t.max > st.max
		st.max = t.max
	}
	confirmed := a.probe.takeConfirmed()
	if e := a.own.Load(); e != nil && confirmed > 0 {
		e.probed(confirmed)
	}
	win := a.probe.window()
	total := int64(0) // unknown: no limit
	if gcc > 0 {
		congestedBefore := a.bw.congestedAt
		total = a.bw.update(now, gcc, win, sent, confirmed)
		if a.bw.congestedAt != congestedBefore {
			a.probe.holdOff(now)
		}
	}
	a.budget.Store(total)
	budget := total
	if budget > 0 {
		budget -= other
		if budget <= 0 {
			budget = 1 // everything but the lowest layers is cut
		}
	}
	allocate(tracks, budget, now, a.state, confirmed > 0)
	congestedAt := a.bw.congestedAt
	a.mu.Unlock()

	if total > 0 && loss < probeLossLimit && now.Sub(congestedAt) >= probeIntervalMin {
		a.maybeProbe(tracks, now, total, other, sent)
	}
	for i := range tracks {
		t := &tracks[i]
		t.d.setSized(t.max)
		if t.d.applyAllocation(t.layer, nowNS) {
			pending = true
		}
	}
	return pending
}

// maybeProbe starts a probe when the tracks' sizes want more than the
// estimate total covers (other: audio; sent: what is being forwarded),
// whether or not the subscriber receives well under it (prober.go says
// why). A successful probe lets the next round jump to the wanted
// layers; the goal covers the dearest layer on the way in case it does
// not. Loss and congestion hold probes off, and failed probes back off.
func (a *allocator) maybeProbe(tracks []allocTrack, now time.Time, total, other, sent int64) {
	want := other
	short := false
	var pad *DownTrack
	bestArea := -1
	for i := range tracks {
		t := &tracks[i]
		if t.max < 0 {
			continue
		}
		// One step at a time passes through every layer up to max:
		// what is wanted is the dearest of them.
		peak := t.costs[t.max]
		for l := max(t.layer, 0); l < t.max; l++ {
			peak = max(peak, t.costs[l])
		}
		want += peak
		short = short || t.layer < t.max
		if t.d.cur.Load() >= 0 && t.area > bestArea {
			pad, bestArea = t.d, t.area
		}
	}
	if !short || float64(want) <= upgradeHeadroom*float64(total) {
		return
	}
	if pad == nil || !a.probe.ready(now) {
		return
	}
	// The goal leaves the allocator its headroom: a probe that shows it
	// lets the next round upgrade.
	goal := min(int64(float64(want)/upgradeHeadroom), int64(float64(total)*probeMaxFactor/probeMargin))
	if a.probe.begin(now, pad, goal) {
		go a.runProbe()
	}
}

// runProbe sends the open probe cluster's padding. It paces by the real
// time, as the probe meter measures what leaves and arrives.
func (a *allocator) runProbe() {
	t := time.NewTicker(probeTick)
	defer t.Stop()
	for a.probe.tick(time.Now()) {
		select {
		case <-a.quit:
			return
		case <-t.C:
		}
	}
}

// setSized records the layer the track's rendered size wants (-1
// hidden), whatever the bandwidth allows: dynacast keeps it coming.
func (d *DownTrack) setSized(s int8) {
	if int8(d.sized.Swap(int32(s))) != s {
		d.up.dyn.update()
	}
}

// applyAllocation sets the layer the allocator chose. The selector aims at
// the highest layer at or below it that the publisher is sending (a layer
// paused by dynacast resumes when it becomes needed, and is switched to
// once its packets arrive), and asks again for a key frame while a switch
// is pending. While the wanted simulcast layer is not sent yet and no
// better one is, the selector aims at the wanted layer directly: it keeps
// forwarding the current layer while it comes and switches at the wanted
// layer's first key frame. It reports whether the wanted layer is not
// being sent yet.
func (d *DownTrack) applyAllocation(want int8, now int64) (pending bool) {
	u := d.up
	prevWant := int8(d.desired.Swap(int32(want)))
	target := want
	if want >= 0 {
		target = -1
		for l := want; l >= 0; l-- {
			if u.live(int(l), now) {
				target = l
				break
			}
		}
		cur := int8(d.cur.Load())
		switch {
		case target == want:
		case u.svc:
			pending = true
			if target < 0 {
				target = want // nothing sent yet: wait for it
				if cur >= 0 {
					target = cur
				}
			}
		case target <= cur || target < 0:
			// Nothing better is sent yet: aim at the wanted layer; the
			// current one is forwarded until its first key frame.
			target, pending = want, true
		default:
			pending = true // a better layer now, the wanted one later
		}
	}
	if pending {
		u.dyn.update() // the wanted layer may be waiting for a pause below it
	}
	if target != int8(d.tgt.Load()) {
		d.setTarget(target)
	} else if target >= 0 && target != int8(d.cur.Load()) {
		u.requestKeyFrame(target) // throttled
	}
	if want != prevWant {
		u.dyn.update()
	}
	return pending
}
