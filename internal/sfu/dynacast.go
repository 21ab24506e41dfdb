package sfu

import (
	"sync"
	"time"
)

// dynacastPause is how long a layer must stay unneeded before the
// publisher is asked to stop sending it. Resuming is immediate.
const dynacastPause = 2 * time.Second

// topOnlyWait bounds how long the layers still being forwarded stay
// paused while everyone waits for the top layer (see needed).
const topOnlyWait = 2 * time.Second

// LayerEvents is implemented by PublisherEvents that want "dynacast": to
// be told which layers of a track any subscriber needs, so that the
// publisher stops encoding the others.
type LayerEvents interface {
	// LayersNeeded reports, by layer index (lowest first), the layers of
	// a video track that should be sent. It is called when the answer
	// changes: at once when a layer becomes needed, after a debounce of
	// two seconds when one stops being needed. It must not block.
	LayersNeeded(t *UpTrack, active []bool)
}

// dynacast tracks which layers of an up track its down tracks need.
type dynacast struct {
	u      *UpTrack
	events LayerEvents // nil: nobody listens

	mu     sync.Mutex
	active [maxLayers]bool // what the publisher was last told
	timer  *time.Timer     // pending pause
	pause  time.Duration
	wait   time.Duration // topOnlyWait
	// topOnlySince: since when only the top layer is wanted and it has
	// not arrived yet; zero otherwise.
	topOnlySince time.Time
}

func (d *dynacast) init(u *UpTrack) {
	d.u = u
	for i := range d.active {
		d.active[i] = true
	}
	d.pause = dynacastPause
	d.wait = topOnlyWait
}

// needed computes, from the down tracks, which layers someone wants or
// still receives. A layer being forwarded stays needed until the switch
// away from it completes, with one exception: when the only layer anyone
// wants is the top simulcast layer and it is not being sent, the layers
// below it are paused at once (top is then true). Chromium does not send the top layer of three
// while the others are active if its camera is small (640x480): it
// limits the number of simulcast layers by resolution. The subscribers
// see the last frame of the old layer until the top layer's first key
// frame; if that does not come within topOnlyWait, the old layers resume.
// Called with d.mu held.
func (d *dynacast) needed(now time.Time) (out [maxLayers]bool, top bool) {
	u := d.u
	var wanted, used [maxLayers]bool
	for _, dt := range *u.downs.Load() {
		want, cur := dt.desired.Load(), dt.cur.Load()
		if u.svc {
			if want >= 0 || cur >= 0 {
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
	}
	if u.svc {
		return out, false
	}
	n := u.Layers()
	onlyTop := n > 1 && wanted[n-1]
	for i := 0; i < n-1; i++ {
		onlyTop = onlyTop && !wanted[i]
	}
	live := u.live(n-1, now.UnixNano())
	switch {
	case !onlyTop:
		d.topOnlySince = time.Time{}
	case d.topOnlySince.IsZero() && live:
		// The top layer comes already: switches to it complete as usual.
	case d.topOnlySince.IsZero() || live:
		d.topOnlySince = now // waiting, or arrived: the others stay paused
	}
	if onlyTop && !d.topOnlySince.IsZero() && now.Sub(d.topOnlySince) < d.wait {
		out[n-1] = true
		return out, true
	}
	for i := range out {
		out[i] = wanted[i] || used[i]
	}
	return out, false
}

// update re-evaluates the needed layers, telling the publisher at once
// about layers to resume and arming the debounce for layers to pause.
func (d *dynacast) update() { d.evaluate(false) }

func (d *dynacast) evaluate(fromTimer bool) {
	if d.events == nil || d.u.kind.String() != "video" {
		return
	}
	n := d.u.Layers()
	d.mu.Lock()
	need, top := d.needed(time.Now())
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
		d.timer = time.AfterFunc(d.pause, func() { d.evaluate(true) })
	}
	if !pausePending && d.timer != nil {
		d.timer.Stop()
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
		d.timer.Stop()
		d.timer = nil
	}
}
