package sfu

import (
	"sync"
	"time"
)

// dynacastPause is how long a layer must stay unneeded before the
// publisher is asked to stop sending it. Resuming is immediate.
const dynacastPause = 2 * time.Second

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
}

func (d *dynacast) init(u *UpTrack) {
	d.u = u
	for i := range d.active {
		d.active[i] = true
	}
	d.pause = dynacastPause
}

// needed computes, from the down tracks, which layers someone wants or
// still receives.
func (d *dynacast) needed() (out [maxLayers]bool) {
	u := d.u
	for _, dt := range *u.downs.Load() {
		want, cur := dt.desired.Load(), dt.cur.Load()
		if u.svc {
			if want >= 0 || cur >= 0 {
				out[0] = true
			}
			continue
		}
		if want >= 0 && want < maxLayers {
			out[want] = true
		}
		if cur >= 0 && cur < maxLayers {
			out[cur] = true
		}
	}
	return out
}

// update re-evaluates the needed layers, telling the publisher at once
// about layers to resume and arming the debounce for layers to pause.
func (d *dynacast) update() { d.evaluate(false) }

func (d *dynacast) evaluate(fromTimer bool) {
	if d.events == nil || d.u.kind.String() != "video" {
		return
	}
	n := d.u.Layers()
	need := d.needed()
	d.mu.Lock()
	changed, pausePending := false, false
	next := d.active
	for i := 0; i < n; i++ {
		switch {
		case need[i] && !next[i]:
			next[i], changed = true, true
		case !need[i] && next[i]:
			if fromTimer {
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
