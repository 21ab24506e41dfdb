package guard

import "time"

// tracker counts failures per key (a room or a source) in a sliding window
// and blocks a key whose count goes over the limit. Times are offsets from
// the Guard's epoch. It is not safe for concurrent use; the Guard's lock
// protects it.
//
// Every entry is in exactly one of two lists. Counting entries are in idle,
// ordered by their latest failure, oldest first: the front is the first to
// leave its window and the one evicted at the cap. Blocked entries are in
// held, ordered by the end of their block: all blocks of a tracker last
// equally long and start in time order, so the front always ends first.
// Both sweeps therefore stop at the first entry that stays, and cost
// nothing for entries that are not removed.
type tracker[K comparable] struct {
	kind       Kind
	limit      int
	window     time.Duration
	block      time.Duration
	maxEntries int
	subject    func(K) string

	entries  map[K]*entry[K]
	idle     list[K]
	held     list[K]
	nblocked int
	evicted  uint64
	dropped  uint64
}

type entry[K comparable] struct {
	key        K
	prev, next *entry[K]
	hits       ring // failures in the window; empty while blocked

	blocked bool
	until   time.Duration // end of the block
	alarm   *Alarm        // while blocked
}

func newTracker[K comparable](kind Kind, limit int, window, block time.Duration, maxEntries int, subject func(K) string) *tracker[K] {
	t := &tracker[K]{
		kind:       kind,
		limit:      limit,
		window:     window,
		block:      block,
		maxEntries: maxEntries,
		subject:    subject,
		entries:    make(map[K]*entry[K]),
	}
	t.idle.init()
	t.held.init()
	return t
}

// blocked reports whether key is blocked at now. The caller has swept.
func (t *tracker[K]) blocked(key K, now time.Duration) bool {
	e := t.entries[key]
	return e != nil && e.blocked && now < e.until
}

// fail counts a failure of key at now (wall is the same instant as a time)
// and returns the alarm raised if it blocks key. Failures of a blocked key
// are ignored. The caller has swept.
func (t *tracker[K]) fail(key K, now time.Duration, wall time.Time) (Alarm, bool) {
	e := t.entries[key]
	switch {
	case e == nil:
		if len(t.entries) >= t.maxEntries && !t.evict() {
			t.dropped++
			return Alarm{}, false
		}
		e = &entry[K]{key: key}
		t.entries[key] = e
	case e.blocked:
		return Alarm{}, false
	default:
		t.idle.remove(e)
	}
	e.hits.expire(now - t.window)
	e.hits.push(now, t.limit+1)
	if e.hits.len() <= t.limit {
		t.idle.pushBack(e)
		return Alarm{}, false
	}
	e.blocked = true
	e.until = now + t.block
	e.alarm = &Alarm{
		Kind:     t.kind,
		Subject:  t.subject(key),
		Since:    wall,
		Until:    wall.Add(t.block),
		Failures: e.hits.len(),
	}
	e.hits = ring{} // counting starts again after the block
	t.held.pushBack(e)
	t.nblocked++
	return *e.alarm, true
}

// evict forgets the counting entry whose latest failure is oldest and
// reports whether there was one.
func (t *tracker[K]) evict() bool {
	e := t.idle.front()
	if e == nil {
		return false
	}
	t.idle.remove(e)
	delete(t.entries, e.key)
	t.evicted++
	return true
}

// sweep ends the blocks that are over at now, appending a Cleared notice
// for each to out, and forgets counting entries with no failure left in
// their window.
func (t *tracker[K]) sweep(now time.Duration, out *[]notice) {
	for e := t.held.front(); e != nil && e.until <= now; e = t.held.front() {
		t.held.remove(e)
		delete(t.entries, e.key)
		t.nblocked--
		*out = append(*out, notice{raised: false, alarm: *e.alarm})
	}
	for e := t.idle.front(); e != nil && e.hits.newest() <= now-t.window; e = t.idle.front() {
		t.idle.remove(e)
		delete(t.entries, e.key)
	}
}

// appendActive appends the alarms of the blocked entries to out.
func (t *tracker[K]) appendActive(out []Alarm) []Alarm {
	for e := t.held.front(); e != nil; e = t.held.after(e) {
		out = append(out, *e.alarm)
	}
	return out
}

// list is a doubly linked list of entries threaded through their prev and
// next fields, with a sentinel root. An entry is in at most one list.
type list[K comparable] struct {
	root entry[K]
}

func (l *list[K]) init() {
	l.root.prev = &l.root
	l.root.next = &l.root
}

func (l *list[K]) front() *entry[K] {
	if l.root.next == &l.root {
		return nil
	}
	return l.root.next
}

func (l *list[K]) after(e *entry[K]) *entry[K] {
	if e.next == &l.root {
		return nil
	}
	return e.next
}

func (l *list[K]) pushBack(e *entry[K]) {
	e.prev = l.root.prev
	e.next = &l.root
	e.prev.next = e
	l.root.prev = e
}

func (l *list[K]) remove(e *entry[K]) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

// ring holds the times of the most recent failures, oldest first. Only
// limit+1 failures matter: one more than the limit is a block, after which
// counting starts again.
type ring struct {
	t    []time.Duration
	head int // index of the oldest time
	n    int
}

// initialRing is the initial capacity of a ring. Most sources fail once or
// twice (a mistyped PIN), so rings start small and grow only for entries
// that keep failing.
const initialRing = 4

// grow enlarges the ring, keeping its times in order, to at most maxSize.
func (r *ring) grow(maxSize int) {
	size := min(max(2*len(r.t), initialRing), maxSize)
	t := make([]time.Duration, size)
	for i := range r.n {
		t[i] = r.t[(r.head+i)%len(r.t)]
	}
	r.t, r.head = t, 0
}

func (r *ring) len() int { return r.n }

// expire drops the times at or before cut.
func (r *ring) expire(cut time.Duration) {
	for r.n > 0 && r.t[r.head] <= cut {
		r.head = (r.head + 1) % len(r.t)
		r.n--
	}
}

// push appends a time. A full ring grows, up to maxSize times; beyond that the
// oldest time is dropped.
func (r *ring) push(d time.Duration, maxSize int) {
	if r.n == len(r.t) {
		if r.n < maxSize {
			r.grow(maxSize)
		} else {
			r.head = (r.head + 1) % len(r.t)
			r.n--
		}
	}
	r.t[(r.head+r.n)%len(r.t)] = d
	r.n++
}

// newest returns the latest time; the ring must not be empty.
func (r *ring) newest() time.Duration {
	return r.t[(r.head+r.n-1)%len(r.t)]
}
