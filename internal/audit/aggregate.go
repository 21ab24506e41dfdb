package audit

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"time"

	"conclave/internal/clock"
)

// Aggregation defaults.
const (
	// DefaultAggregateWindow is how long repeats of a failure are counted
	// before they are written as one record.
	DefaultAggregateWindow = time.Minute
	// DefaultAggregateGroups bounds the failures being counted at once.
	DefaultAggregateGroups = 10_000
)

// Aggregator is a Recorder that writes repeated failures once: the first
// failure of a kind (same actor, source, action, target and reason) is
// written at once, and the repeats within the window that follows are
// counted and written as one record with "repeated" (how many), "first"
// and "last" details when the window ends. Events that are not failures
// pass straight through.
//
// A client that hammers a refused door (wrong PINs, a quarantined address,
// made-up usernames) thus writes two records a minute, not one per
// attempt, while the log still says how many there were. Memory stays
// bounded: beyond MaxGroups kinds being counted, further failures of an
// action are counted together, their source and target left out.
//
// Call Flush now and then (Run does it) to write the counts of windows
// that ended; Record flushes too. Flush(ctx, true) writes everything, at
// shutdown.
type Aggregator struct {
	rec       Recorder
	clock     clock.Clock
	window    time.Duration
	maxGroups int

	mu        sync.Mutex
	groups    map[groupKey]*group
	lastFlush time.Time
}

type groupKey struct {
	actor, source, action, target, reason string
}

type group struct {
	first    Event
	start    time.Time // when first was recorded
	repeats  int
	firstRep time.Time
	lastRep  time.Time
}

// NewAggregator returns an Aggregator writing to rec. A nil clk means the
// system clock; a window of 0 means DefaultAggregateWindow.
func NewAggregator(rec Recorder, clk clock.Clock, window time.Duration) *Aggregator {
	if window <= 0 {
		window = DefaultAggregateWindow
	}
	return &Aggregator{rec: rec, clock: clock.Or(clk), window: window, maxGroups: DefaultAggregateGroups, groups: map[groupKey]*group{}}
}

// Record implements Recorder.
func (a *Aggregator) Record(ctx context.Context, e Event) error {
	if e.Outcome != OutcomeFailure {
		return a.rec.Record(ctx, e)
	}
	now := a.clock.Now()
	if e.Time.IsZero() {
		e.Time = now
	}
	if e.Source == "" {
		e.Source = SourceFrom(ctx)
	}
	key := groupKey{actor: e.Actor, source: e.Source, action: e.Action, target: e.Target, reason: e.Details["reason"]}
	a.mu.Lock()
	due := a.dueLocked(now, false)
	g := a.groups[key]
	if g == nil && len(a.groups) >= a.maxGroups {
		// Too many kinds at once: count this one with the others of its
		// action, whoever and whatever it was.
		key = groupKey{action: e.Action, reason: "many"}
		g = a.groups[key]
		if g == nil {
			e = Event{Time: e.Time, Actor: "many", Source: "many", Action: e.Action, Outcome: OutcomeFailure,
				Details: map[string]string{"reason": "many sources and targets at once"}}
		}
	}
	write := g == nil
	if write {
		a.groups[key] = &group{first: e, start: now}
	} else {
		if g.repeats == 0 {
			g.firstRep = e.Time
		}
		g.repeats++
		g.lastRep = e.Time
	}
	a.mu.Unlock()
	err := a.write(ctx, due)
	if write {
		if werr := a.rec.Record(ctx, e); werr != nil {
			return werr
		}
	}
	return err
}

// Flush writes the counts of the windows that have ended, or of all when
// all is set, and forgets them.
func (a *Aggregator) Flush(ctx context.Context, all bool) error {
	a.mu.Lock()
	due := a.dueLocked(a.clock.Now(), all)
	a.mu.Unlock()
	return a.write(ctx, due)
}

// Run flushes every tenth of the window until ctx ends, then flushes all.
func (a *Aggregator) Run(ctx context.Context) {
	stop := clock.Every(a.clock, a.window/10, func() { a.Flush(ctx, false) })
	<-ctx.Done()
	stop()
	a.Flush(context.Background(), true)
}

// Pending returns how many kinds of failure are being counted.
func (a *Aggregator) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.groups)
}

// dueLocked takes the groups whose window ended (all of them if all) out
// of the map and returns the summary records to write. Without all, it
// looks at most once a second.
func (a *Aggregator) dueLocked(now time.Time, all bool) []Event {
	if !all && now.Sub(a.lastFlush) < time.Second {
		return nil
	}
	a.lastFlush = now
	var out []Event
	for k, g := range a.groups {
		if !all && now.Sub(g.start) < a.window {
			continue
		}
		delete(a.groups, k)
		if g.repeats == 0 {
			continue
		}
		e := g.first
		e.Time = g.lastRep
		d := maps.Clone(e.Details)
		if d == nil {
			d = map[string]string{}
		}
		d["repeated"] = strconv.Itoa(g.repeats)
		d["first"] = g.firstRep.UTC().Format(time.RFC3339)
		d["last"] = g.lastRep.UTC().Format(time.RFC3339)
		e.Details = d
		out = append(out, e)
	}
	return out
}

func (a *Aggregator) write(ctx context.Context, events []Event) error {
	var first error
	for _, e := range events {
		if err := a.rec.Record(ctx, e); err != nil && first == nil {
			first = err
		}
	}
	return first
}
