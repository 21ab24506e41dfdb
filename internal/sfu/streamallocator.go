package sfu

import (
	"slices"
	"time"
)

// Stream allocation policy. The allocator of a subscriber runs every
// allocateInterval (and at once when the subscriber reports a new layout).
// It distributes the subscriber's estimated bandwidth over its video
// tracks in priority order (screen share, then the active speaker, then
// the others by rendered area): first the lowest layer for every visible
// track, then upgrades toward the layer that fits each track's rendered
// size. Downgrades are immediate. Upgrades are cautious, which stands in
// for probing (no padding is sent): one layer per track per round, only
// with upgradeHeadroom of spare estimate, and not within upgradeHold of a
// downgrade caused by bandwidth. The send-side estimator (GCC) raises its
// estimate by itself while the link is underused, so the allocator climbs
// back as the estimate grows.
const (
	allocateInterval = 500 * time.Millisecond
	upgradeHeadroom  = 0.85
	upgradeHold      = 4 * time.Second
)

// allocTrack is the allocator's view of one video down track.
type allocTrack struct {
	d        *DownTrack
	priority int  // higher first
	area     int  // rendered pixels
	max      int8 // best layer for the rendered size; -1 hidden
	layer    int8 // allocated layer
	prev     int8 // previously allocated layer
	costs    [maxLayers]int64
}

// allocState is per down track state kept between rounds.
type allocState struct {
	lastDowngrade time.Time
}

// allocate runs one round for the given down tracks with budget bits per
// second (0 or less: unknown, no limit). It returns the layer for each
// track, in the order given. state is updated.
func allocate(tracks []allocTrack, budget int64, now time.Time, state map[*DownTrack]*allocState) {
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
				// An upgrade: one step per round, with headroom, not
				// right after a downgrade.
				if next > t.prev+1 && t.prev >= 0 {
					break
				}
				if !unlimited && float64(used+extra) > upgradeHeadroom*float64(budget) {
					break
				}
				if st != nil && now.Sub(st.lastDowngrade) < upgradeHold {
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

// trackPriority ranks a track for the allocator.
func trackPriority(u *UpTrack) int {
	switch {
	case u.source == "screen":
		return 2
	case u.speaker.Load():
		return 1
	}
	return 0
}

// runAllocator is the subscriber's allocation loop.
func (s *Subscriber) runAllocator() {
	t := time.NewTicker(allocateInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		case <-s.kick:
		}
		s.allocateOnce(time.Now())
	}
}

// allocateOnce runs one allocation round over the subscriber's tracks.
func (s *Subscriber) allocateOnce(now time.Time) {
	s.mu.Lock()
	downs := make([]*DownTrack, 0, len(s.downs))
	for _, d := range s.downs {
		downs = append(downs, d)
	}
	s.mu.Unlock()
	budget := int64(0)
	if s.estimate != nil {
		budget = int64(s.estimate())
	}
	nowNS := now.UnixNano()
	tracks := make([]allocTrack, 0, len(downs))
	for _, d := range downs {
		u := d.up
		if u.kind.String() != "video" {
			if budget > 0 {
				budget -= u.layerCost(0, nowNS)
			}
			continue
		}
		t := allocTrack{d: d, priority: trackPriority(u), prev: int8(d.desired.Load())}
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
	if budget < 0 {
		budget = 1 // everything but the lowest layers is cut
	}
	s.allocMu.Lock()
	allocate(tracks, budget, now, s.allocState)
	s.allocMu.Unlock()
	for i := range tracks {
		t := &tracks[i]
		t.d.applyAllocation(t.layer, nowNS)
	}
}

// applyAllocation sets the layer the allocator chose. The selector aims at
// the highest layer at or below it that the publisher is sending (a layer
// paused by dynacast resumes when it becomes needed, and is switched to
// once its packets arrive), and asks again for a key frame while a switch
// is pending.
func (d *DownTrack) applyAllocation(want int8, now int64) {
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
		if target < 0 {
			target = want // nothing sent yet: wait for it
			if cur := int8(d.cur.Load()); cur >= 0 {
				target = cur
			}
		}
	}
	if target != int8(d.tgt.Load()) {
		d.setTarget(target)
	} else if target >= 0 && target != int8(d.cur.Load()) {
		u.requestKeyFrame(target) // throttled
	}
	if want != prevWant {
		u.dyn.update()
	}
}
