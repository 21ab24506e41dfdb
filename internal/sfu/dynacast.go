package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/conn"
)

// dynacastPause is how long a layer must stay unneeded before the
// publisher is asked to stop sending it. Resuming is immediate.
const dynacastPause = 2 * time.Second

// topOnlyDelay is how long the top layer, wanted alone, may be missing
// while the layers below it still come before they are paused (see
// needed); topOnlyWait bounds how long they then stay paused while
// everyone waits for the top layer.
const (
	topOnlyDelay = time.Second
	topOnlyWait  = 2 * time.Second
)

// dynacast tracks which layers of an up track its down tracks need.
type dynacast struct {
	u      *UpTrack
	events conn.PublisherEvents // told LayersNeeded; nil: nobody listens

	clock     clock.Clock // the up track's
	scheduled atomic.Bool // an evaluation is scheduled (updateSoon)

	mu     sync.Mutex
	active [maxLayers]bool  // what the publisher was last told
	timer  func() (ok bool) // stops the pending pause; nil when none
	pause  time.Duration
	delay  time.Duration // topOnlyDelay
	wait   time.Duration // topOnlyWait
	// missingSince: since when only the top layer is wanted and it does
	// not arrive; zero otherwise. topOnlySince: since when the layers
	// below it are paused for it (refreshed while it arrives and the
	// switches to it complete); zero when they are not.
	missingSince time.Time
	topOnlySince time.Time
}

func (d *dynacast) init(u *UpTrack) {
	d.u = u
	for i := range d.active {
		d.active[i] = true
	}
	d.pause = dynacastPause
	d.delay = topOnlyDelay
	d.wait = topOnlyWait
	d.clock = u.clock
}

// needed computes, from the down tracks, which layers someone wants (by
// allocation, or by rendered size alone while its bandwidth does not
// allow it yet) or still receives: a layer being forwarded stays needed
// until the switch away from it completes, so that a subscriber waiting
// for a resumed layer keeps its picture moving (make before break).
//
// One exception, for publishers that do not send the top layer next to
// the others: when the top simulcast layer is the only one allocated to
// anyone and it has not arrived topOnlyDelay after that began, the
// layers below it are paused (top is then true). Chromium encodes no
// more simulcast layers than its table allows for the capture size (two
// for 640x480: with q, h and f active it sends q and h; the browser
// client configures no more than that, but a capture can shrink), and
// gives one active layer the whole estimate where two may leave the
// upper one unsent until its estimate climbs. The subscribers then see
// the last frame of the old layer until the top layer's first key frame;
// if that does not come within topOnlyWait, the old layers resume (and
// stay, until the wanted layers change). Called with d.mu held.
func (d *dynacast) needed(now time.Time) (out [maxLayers]bool, top bool) {
	u := d.u
	var wanted, used, sized [maxLayers]bool
	for _, dt := range *u.downs.Load() {
		want, cur, size := dt.desired.Load(), dt.cur.Load(), dt.sized.Load()
		if u.svc {
			if want >= 0 || cur >= 0 || size >= 0 {
				out[0] = true
			}
			continue
		}
		if want >= 0 && want < maxLayers {
			wanted[want] = true
		}
		if cur >= 0 && cur < maxLayers {
			used[cur] = true
		}
		if size >= 0 && size < maxLayers {
			sized[size] = true
		}
	}
	// Relays to other nodes need what their subscribers need (relay.go).
	var tapped [maxLayers]bool
	u.tapNeeds(&tapped)
	if u.svc {
		out[0] = out[0] || tapped[0]
		return out, false
	}
	for i := range wanted {
		wanted[i] = wanted[i] || tapped[i]
	}
	n := u.Layers()
	onlyTop := n > 1 && wanted[n-1]
	for i := 0; i < n-1; i++ {
		onlyTop = onlyTop && !wanted[i]
	}
	live := u.live(n-1, now.UnixNano())
	switch {
	case !onlyTop:
		d.missingSince, d.topOnlySince = time.Time{}, time.Time{}
	case live:
		d.missingSince = time.Time{}
		if !d.topOnlySince.IsZero() && now.Sub(d.topOnlySince) < d.wait {
			d.topOnlySince = now // arrived: the others stay paused
		}
	case d.missingSince.IsZero():
		d.missingSince = now
	case d.topOnlySince.IsZero() && now.Sub(d.missingSince) >= d.delay:
		d.topOnlySince = now
	}
	if onlyTop && !d.topOnlySince.IsZero() && now.Sub(d.topOnlySince) < d.wait {
		out[n-1] = true
		return out, true
	}
	for i := range out {
		out[i] = wanted[i] || used[i] || sized[i]
	}
	return out, false
}

// update re-evaluates the needed layers, telling the publisher at once
// about layers to resume and arming the debounce for layers to pause.
// The forwarding path calls updateSoon instead.
func (d *dynacast) update() { d.evaluate(false) }

// updateSoon is update for the forwarding path (a down track whose layer
// switch completed): the evaluation, and the LayersNeeded report it may
// make (which becomes a signaling message, JSON encoding and a WebSocket
// write), run on a timer goroutine of the clock, not on the goroutine
// that forwards packets; the updates that come before it runs make one
// evaluation. It allocates only when it schedules, at a layer switch.
func (d *dynacast) updateSoon() {
	if d.events == nil || d.u.kind != webrtc.RTPCodecTypeVideo || d.scheduled.Swap(true) {
		return
	}
	d.clock.AfterFunc(0, func() {
		d.scheduled.Store(false)
		if !d.u.ended.Load() {
			d.evaluate(false)
		}
	})
}

func (d *dynacast) evaluate(fromTimer bool) {
	if d.events == nil || d.u.kind.String() != "video" {
		return
	}
	n := d.u.Layers()
	d.mu.Lock()
	need, top := d.needed(d.clock.Now())
	changed, pausePending := false, false
	next := d.active
	for i := 0; i < n; i++ {
		switch {
		case need[i] && !next[i]:
			next[i], changed = true, true
		case !need[i] && next[i]:
			if fromTimer || top {
				next[i], changed = false, true
			} else {
				pausePending = true
			}
		}
	}
	if fromTimer {
		d.timer = nil
	}
	if pausePending && d.timer == nil && !d.u.ended.Load() {
		d.timer = d.clock.AfterFunc(d.pause, func() { d.evaluate(true) })
	}
	if !pausePending && d.timer != nil {
		d.timer()
		d.timer = nil
	}
	d.active = next
	var report []bool
	if changed {
		report = append([]bool(nil), next[:n]...)
	}
	d.mu.Unlock()
	if report != nil {
		d.events.LayersNeeded(d.u, report)
	}
}

func (d *dynacast) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer()
		d.timer = nil
	}
}
