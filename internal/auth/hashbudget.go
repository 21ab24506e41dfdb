package auth

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// ErrHashBusy refuses a password or PIN check because the server is
// already hashing as much as its memory budget allows, or the client's
// address already has as many checks waiting as it may. Answer it as
// "busy, try again": nothing was checked and nothing was counted.
var ErrHashBusy = errors.New("the server is busy checking other sign-ins; try again in a moment")

// DefaultHashMemory is the memory Argon2 may use at once (64 MiB): one
// password check (64 MiB) or three PIN checks (19 MiB each). With Go's
// garbage collector letting the heap grow to twice what is live, this
// keeps a node under a sign-in flood within about 200 MiB resident
// (docs/hardening.md, load test); a password check takes about 0.3 s of
// one core, so more at once would not go faster on a small machine anyway.
const DefaultHashMemory = 64 << 20

// Defaults of NewHashBudget.
const (
	// DefaultHashPerSource is how many checks one source (an IPv4 address
	// or IPv6 /64) may have running or waiting at once.
	DefaultHashPerSource = 4
	// DefaultHashWait is how long a check waits for memory before it is
	// refused with ErrHashBusy.
	DefaultHashWait = 10 * time.Second
)

// HashBudget bounds the memory that Argon2 password and PIN hashing takes
// at once. Every Argon2 computation on behalf of a client (sign-in, PIN,
// password change) first acquires its memory cost from the budget; when
// the budget is spent the next one waits, so that a flood of sign-ins with
// made-up usernames costs at most the budget in memory and two cores in
// CPU, never gigabytes. A source may have only a few checks running or
// waiting at once, so that one address cannot fill the queue and starve
// everyone else. It is safe for concurrent use.
type HashBudget struct {
	total     int64 // KiB
	perSource int
	wait      time.Duration
	sem       *semaphore.Weighted

	mu      sync.Mutex
	sources map[netip.Prefix]int
	stats   HashStats
	inUse   int64
}

// HashStats counts what a HashBudget did, for metrics and tests.
type HashStats struct {
	// Granted counts checks that got their memory.
	Granted uint64
	// Busy counts checks refused with ErrHashBusy.
	Busy uint64
	// PeakKiB is the most memory granted at once.
	PeakKiB int64
	// TotalKiB is the budget.
	TotalKiB int64
}

// NewHashBudget returns a budget of memoryBytes (DefaultHashMemory if not
// positive) with the default per-source limit and wait.
func NewHashBudget(memoryBytes int64) *HashBudget {
	if memoryBytes <= 0 {
		memoryBytes = DefaultHashMemory
	}
	kib := memoryBytes >> 10
	return &HashBudget{total: kib, perSource: DefaultHashPerSource, wait: DefaultHashWait,
		sem: semaphore.NewWeighted(kib), sources: map[netip.Prefix]int{}}
}

// Acquire waits until kib KiB of hashing memory are free and returns the
// function that gives them back. A cost above the whole budget takes the
// whole budget. It returns ErrHashBusy at once when source already has
// its share of checks running or waiting, and after the wait limit when
// the memory did not come free; ctx's error when ctx ends first.
func (b *HashBudget) Acquire(ctx context.Context, source netip.Prefix, kib uint32) (func(), error) {
	n := min(int64(kib), b.total)
	b.mu.Lock()
	if b.sources[source] >= b.perSource {
		b.stats.Busy++
		b.mu.Unlock()
		return nil, ErrHashBusy
	}
	b.sources[source]++
	b.mu.Unlock()
	leave := func() {
		b.mu.Lock()
		if b.sources[source]--; b.sources[source] <= 0 {
			delete(b.sources, source)
		}
		b.mu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	err := b.sem.Acquire(wctx, n)
	cancel()
	if err != nil {
		leave()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b.mu.Lock()
		b.stats.Busy++
		b.mu.Unlock()
		return nil, ErrHashBusy
	}
	b.mu.Lock()
	b.stats.Granted++
	b.inUse += n
	b.stats.PeakKiB = max(b.stats.PeakKiB, b.inUse)
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.inUse -= n
			b.mu.Unlock()
			b.sem.Release(n)
			leave()
		})
	}, nil
}

// Stats returns the counts so far.
func (b *HashBudget) Stats() HashStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.stats
	st.TotalKiB = b.total
	return st
}

// TotalKiB is the budget's size.
func (b *HashBudget) TotalKiB() int64 { return b.total }
