// Package guard resists break-ins on room access: it counts wrong PINs and
// unknown room aliases, blocks a room that is being guessed at, quarantines
// an address that is guessing, and raises an alarm for each.
//
// The meeting code asks Check before it looks at the alias or the PIN of an
// access attempt, and reports each wrong PIN or unknown alias with Fail:
//
//	if err := g.Check(addr, alias); err != nil {
//		return errWrongRoomOrPIN // exactly as for a wrong PIN
//	}
//	room, ok := rooms.Lookup(alias)
//	if !ok {
//		g.Fail(addr, alias, guard.UnknownRoom)
//		return errWrongRoomOrPIN
//	}
//	if !room.PINMatches(pin) {
//		g.Fail(addr, alias, guard.WrongPIN)
//		return errWrongRoomOrPIN
//	}
//
// Rules, with the thresholds of DefaultConfig:
//
//   - Room block: more than 20 wrong PINs on one room within a sliding
//     window of 10 minutes, from any addresses, refuse new access to that
//     room for 10 minutes, even with the right PIN. Participants already
//     in the room are not affected; the guard only answers Check.
//   - Address quarantine: more than 20 failures (wrong PINs on any room, or
//     unknown aliases) from one source within 10 minutes refuse every
//     access attempt from that source for 10 minutes. An IPv4 source is
//     one address. An IPv6 source is its /64 prefix: a single host is
//     normally given a whole /64 and can pick any address in it (privacy
//     addresses, SLAAC), so counting single IPv6 addresses would give an
//     attacker 2^64 fresh counters. IPv4-mapped IPv6 addresses
//     (::ffff:192.0.2.1, as seen on dual-stack sockets) count as the IPv4
//     address they carry.
//   - Allow list: addresses in Config.Allow are exempt. Their failures are
//     not counted and neither room blocks nor quarantines apply to them.
//     The allow list is for the organisation's own networks: an attacker
//     who blocks a room must not lock out the people who meet in it, and an
//     office behind one NAT address must not be quarantined by its own
//     mistyped PINs. An attacker inside an allowed network is not slowed
//     down by this package, so keep the list short.
//
// When a block or quarantine starts, the counter behind it starts again from
// zero, and attempts refused by Check are not counted: no PIN was tried. So
// a guesser who stays under a threshold gets at most 20 tries in any 10
// minutes, and one who goes over gets 21 and then waits out the block.
//
// A successful access resets nothing, and the package has no way to say so.
// Otherwise an attacker who knows the PIN of one room (their own, say) could
// clear their address's count between guesses on another room, and anyone
// admitted to a room would clear the count of the people guessing at it.
//
// Memory stays bounded under attack. Room entries are only made for wrong
// PINs, which the caller reports only for rooms that exist; unknown aliases
// are counted against the source address alone, so inventing aliases grows
// nothing. The number of tracked sources and rooms is capped (MaxAddresses,
// MaxRooms); at the cap the entry whose last failure is oldest is forgotten.
// Entries that are blocked or quarantined are never evicted; if every entry
// is, a failure from a new source is not counted against the source (the
// room counter still counts it) and Stats reports it as Dropped.
//
// Every block and quarantine raises an alarm through Events when it starts
// and clears it when it ends; Active lists the alarms currently raised.
// Expired blocks are cleared on every call into the Guard and by Sweep,
// which Run calls periodically so that alarms clear on time even when no
// one is knocking.
package guard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"conclave/internal/clock"
)

// ErrRefused reports an access attempt refused because the room is blocked
// or the source address is quarantined. The caller must answer it exactly
// as it answers a wrong PIN or an unknown room, so that an attacker learns
// nothing from the answer.
var ErrRefused = errors.New("access refused: wrong room or PIN")

// Reason says what was wrong with a failed access attempt.
type Reason int

const (
	// WrongPIN is a wrong PIN for a room that exists. It counts against the
	// room and against the source address.
	WrongPIN Reason = iota + 1
	// UnknownRoom is an alias that names no room. It counts against the
	// source address only.
	UnknownRoom
	// FailedLogin is a failed sign-in (wrong password or unknown
	// username). It counts against the source address only, so that
	// guessing passwords across many usernames from one address is
	// stopped like guessing PINs (lockout.md).
	FailedLogin
	// Refused is an attempt on a blocked room. It counts against the
	// source address only, so that an address hammering a blocked room is
	// quarantined.
	Refused
)

// String returns the reason as used in logs: "wrong-pin" or "unknown-room".
func (r Reason) String() string {
	switch r {
	case WrongPIN:
		return "wrong-pin"
	case UnknownRoom:
		return "unknown-room"
	case FailedLogin:
		return "failed-login"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Kind names the kind of an alarm.
type Kind string

// The kinds of alarm.
const (
	// RoomBlocked: new access to the room named by Alarm.Subject is refused.
	RoomBlocked Kind = "room-blocked"
	// AddressQuarantined: access from the source named by Alarm.Subject is
	// refused.
	AddressQuarantined Kind = "address-quarantined"
)

// Alarm describes one block or quarantine. Cleared receives the same Alarm
// that Raised received.
type Alarm struct {
	// Kind is RoomBlocked or AddressQuarantined.
	Kind Kind
	// Subject is the room alias in lower case for RoomBlocked, and the
	// source for AddressQuarantined: an address ("192.0.2.7") or, for IPv6,
	// a prefix ("2001:db8:1:2::/64").
	Subject string
	// Since is when the block started.
	Since time.Time
	// Until is when the block ends.
	Until time.Time
	// Failures is the number of failures within the window that triggered
	// the block.
	Failures int
}

// Events receives alarms as they are raised and cleared, for the alarm
// list and the audit log. Calls are made one at a time, in the order in
// which the alarms changed, and never while the Guard's lock is held, so an
// implementation may call back into the Guard. They run on the goroutine of
// whichever Guard call (or Run) noticed the change; an implementation should
// return quickly.
type Events interface {
	// Raised reports that a block or quarantine has started.
	Raised(Alarm)
	// Cleared reports that a block or quarantine has ended.
	Cleared(Alarm)
}

type noEvents struct{}

func (noEvents) Raised(Alarm)  {}
func (noEvents) Cleared(Alarm) {}

// Config sets the thresholds of a Guard. Zero fields take the value of
// DefaultConfig; negative ones are an error.
type Config struct {
	// RoomFailures is how many wrong PINs on one room within RoomWindow are
	// tolerated; one more blocks the room (20).
	RoomFailures int
	// RoomWindow is the sliding window over which wrong PINs on a room are
	// counted (10 minutes).
	RoomWindow time.Duration
	// RoomBlock is how long a blocked room refuses new access (10 minutes).
	RoomBlock time.Duration

	// AddressFailures is how many failures from one source within
	// AddressWindow are tolerated; one more quarantines the source (20).
	AddressFailures int
	// AddressWindow is the sliding window over which failures from a
	// source are counted (10 minutes).
	AddressWindow time.Duration
	// AddressQuarantine is how long a quarantined source is refused
	// (10 minutes).
	AddressQuarantine time.Duration

	// IPv4PrefixLen is the length of the prefix that counts as one IPv4
	// source (32: each address).
	IPv4PrefixLen int
	// IPv6PrefixLen is the length of the prefix that counts as one IPv6
	// source (64: the prefix one host owns).
	IPv6PrefixLen int

	// MaxAddresses caps the number of sources tracked at once (100000).
	MaxAddresses int
	// MaxRooms caps the number of rooms tracked at once (100000). Only
	// rooms with recent wrong PINs are tracked.
	MaxRooms int

	// Allow lists the addresses and networks exempt from counting, room
	// blocks and quarantine. A single address is a full-length prefix
	// (ParseAllow builds the list from text).
	Allow []netip.Prefix

	// SweepInterval is how often Run clears expired blocks (1 second). An
	// alarm clears at most this long after its block ended.
	SweepInterval time.Duration
}

// DefaultConfig returns the thresholds of the design: more than 20 failures
// in 10 minutes block for 10 minutes, per room and per source, IPv6 sources
// counted by /64, at most 100000 sources and rooms tracked, no allow list.
func DefaultConfig() Config {
	return Config{
		RoomFailures:      20,
		RoomWindow:        10 * time.Minute,
		RoomBlock:         10 * time.Minute,
		AddressFailures:   20,
		AddressWindow:     10 * time.Minute,
		AddressQuarantine: 10 * time.Minute,
		IPv4PrefixLen:     32,
		IPv6PrefixLen:     64,
		MaxAddresses:      100_000,
		MaxRooms:          100_000,
		SweepInterval:     time.Second,
	}
}

// withDefaults returns c with zero fields set from DefaultConfig, and an
// error naming the first field that is out of range.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	ints := []struct {
		name string
		v    *int
		def  int
		max  int
	}{
		{"RoomFailures", &c.RoomFailures, d.RoomFailures, 0},
		{"AddressFailures", &c.AddressFailures, d.AddressFailures, 0},
		{"IPv4PrefixLen", &c.IPv4PrefixLen, d.IPv4PrefixLen, 32},
		{"IPv6PrefixLen", &c.IPv6PrefixLen, d.IPv6PrefixLen, 128},
		{"MaxAddresses", &c.MaxAddresses, d.MaxAddresses, 0},
		{"MaxRooms", &c.MaxRooms, d.MaxRooms, 0},
	}
	for _, f := range ints {
		switch {
		case *f.v < 0:
			return c, fmt.Errorf("guard: %s is %d; it must not be negative", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		case f.max > 0 && *f.v > f.max:
			return c, fmt.Errorf("guard: %s is %d; it must be at most %d", f.name, *f.v, f.max)
		}
	}
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RoomWindow", &c.RoomWindow, d.RoomWindow},
		{"RoomBlock", &c.RoomBlock, d.RoomBlock},
		{"AddressWindow", &c.AddressWindow, d.AddressWindow},
		{"AddressQuarantine", &c.AddressQuarantine, d.AddressQuarantine},
		{"SweepInterval", &c.SweepInterval, d.SweepInterval},
	}
	for _, f := range durs {
		switch {
		case *f.v < 0:
			return c, fmt.Errorf("guard: %s is %v; it must not be negative", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	allow := make([]netip.Prefix, 0, len(c.Allow))
	for _, p := range c.Allow {
		if !p.IsValid() {
			return c, fmt.Errorf("guard: allow list entry %q is not a valid prefix", p)
		}
		// Match on the unmapped address, as Check does.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		allow = append(allow, netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked())
	}
	c.Allow = allow
	return c, nil
}

// ParseAllow parses an allow list written as text, one address
// ("192.0.2.7", "2001:db8::1") or network ("192.0.2.0/24", "2001:db8::/48")
// per entry, for Config.Allow. Surrounding spaces are ignored.
func ParseAllow(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for _, s := range entries {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("allow list entry %q is not a network such as 192.0.2.0/24: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("allow list entry %q is not an address such as 192.0.2.7: %w", s, err)
		}
		a = a.WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Guard counts failed room access attempts and refuses access to blocked
// rooms and from quarantined sources. It is safe for concurrent use.
type Guard struct {
	cfg    Config
	clock  clock.Clock
	events Events
	epoch  time.Time // clock reading at New; times are kept as offsets from it

	mu         sync.Mutex
	rooms      *tracker[string]
	addrs      *tracker[netip.Prefix]
	pending    []notice // alarm changes not yet delivered to events
	delivering bool     // a goroutine is delivering pending
}

// notice is one alarm change waiting for delivery.
type notice struct {
	raised bool
	alarm  Alarm
}

// New returns a Guard with the thresholds of cfg. The Guard reads clk for
// every decision and sweeps on its timers (nil means clock.System); nil
// events means alarms are only visible through Active.
func New(cfg Config, clk clock.Clock, events Events) (*Guard, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	clk = clock.Or(clk)
	if events == nil {
		events = noEvents{}
	}
	g := &Guard{cfg: cfg, clock: clk, events: events, epoch: clk.Now()}
	g.rooms = newTracker(RoomBlocked, cfg.RoomFailures, cfg.RoomWindow, cfg.RoomBlock, cfg.MaxRooms,
		func(s string) string { return s })
	g.addrs = newTracker(AddressQuarantined, cfg.AddressFailures, cfg.AddressWindow, cfg.AddressQuarantine, cfg.MaxAddresses,
		sourceString)
	return g, nil
}

// Check reports whether an access attempt from addr to the room with alias
// room may go on to have its PIN checked. It returns ErrRefused if addr's
// source is quarantined or the room is blocked, unless addr is on the allow
// list, and nil otherwise. Call it for every attempt, before finding out
// whether the room exists, so that unknown and blocked rooms answer alike.
// Check counts nothing.
func (g *Guard) Check(addr netip.Addr, room string) error {
	g.mu.Lock()
	now := g.lockedSweep()
	refused := false
	if !g.allowed(addr) {
		refused = g.addrs.blocked(g.source(addr), now) || g.rooms.blocked(roomKey(room), now)
	}
	g.unlock()
	if refused {
		return ErrRefused
	}
	return nil
}

// CheckAddress reports whether addr's source is quarantined: ErrRefused if
// it is (and addr is not on the allow list), nil otherwise. Callers check
// it before any costly work (a PIN or password hash), so that a
// quarantined address costs the server nothing. It counts nothing.
func (g *Guard) CheckAddress(addr netip.Addr) error {
	g.mu.Lock()
	now := g.lockedSweep()
	refused := !g.allowed(addr) && g.addrs.blocked(g.source(addr), now)
	g.unlock()
	if refused {
		return ErrRefused
	}
	return nil
}

// RoomBlocked reports whether new access to the room with alias room is
// blocked now. The caller decides who still gets in (members of the room
// who signed in with their account do, see package access).
func (g *Guard) RoomBlocked(room string) bool {
	g.mu.Lock()
	now := g.lockedSweep()
	blocked := g.rooms.blocked(roomKey(room), now)
	g.unlock()
	return blocked
}

// Allowed reports whether addr is on the allow list.
func (g *Guard) Allowed(addr netip.Addr) bool { return g.allowed(addr) }

// Source returns the source addr's failures count toward: the IPv4
// address, or the IPv6 /64 with the default prefix lengths. Other
// per-source limits (a removed guest's ban, concurrent hashing) use it
// too, so that they cannot be dodged with a fresh IPv6 address.
func (g *Guard) Source(addr netip.Addr) netip.Prefix { return g.source(addr) }

// SourceString names addr's source as alarms do: "192.0.2.7" or
// "2001:db8:1:2::/64".
func (g *Guard) SourceString(addr netip.Addr) string { return sourceString(g.source(addr)) }

// Fail records a failed access attempt from addr to the room with alias
// room. WrongPIN counts against the room and the source; UnknownRoom (and
// any other reason) counts against the source only and keeps nothing about
// the alias. Failures from allowed addresses are not counted, nor are
// failures against a room or source that is already blocked. Reaching a
// threshold raises an alarm.
//
// Call Fail only for attempts that Check let through.
func (g *Guard) Fail(addr netip.Addr, room string, reason Reason) {
	g.mu.Lock()
	now := g.lockedSweep()
	if !g.allowed(addr) {
		wall := g.wall(now)
		if a, ok := g.addrs.fail(g.source(addr), now, wall); ok {
			g.pending = append(g.pending, notice{raised: true, alarm: a})
		}
		if reason == WrongPIN {
			if a, ok := g.rooms.fail(roomKey(room), now, wall); ok {
				g.pending = append(g.pending, notice{raised: true, alarm: a})
			}
		}
	}
	g.unlock()
}

// Sweep ends the blocks and quarantines whose time is up, reporting each to
// Events.Cleared, and forgets counters whose failures have all left their
// window. Every other method sweeps too; Run calls Sweep periodically so
// that alarms clear on time when no attempts arrive.
func (g *Guard) Sweep() {
	g.mu.Lock()
	g.lockedSweep()
	g.unlock()
}

// Run calls Sweep every Config.SweepInterval, on the Guard's clock, until
// ctx is done. The first sweep is scheduled before Run blocks.
func (g *Guard) Run(ctx context.Context) {
	stop := clock.Every(g.clock, g.cfg.SweepInterval, g.Sweep)
	<-ctx.Done()
	stop()
}

// Active returns the alarms currently raised, for the admin interface and
// metrics: every blocked room and quarantined source, oldest first.
func (g *Guard) Active() []Alarm {
	g.mu.Lock()
	g.lockedSweep()
	out := make([]Alarm, 0, g.rooms.nblocked+g.addrs.nblocked)
	out = g.rooms.appendActive(out)
	out = g.addrs.appendActive(out)
	g.unlock()
	slices.SortStableFunc(out, func(a, b Alarm) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return out
}

// Stats counts what a Guard holds, for metrics.
type Stats struct {
	// Rooms and Addresses are the numbers of rooms and sources tracked,
	// blocked ones included.
	Rooms, Addresses int
	// BlockedRooms and QuarantinedAddresses are the numbers of alarms
	// currently raised of each kind.
	BlockedRooms, QuarantinedAddresses int
	// EvictedRooms and EvictedAddresses count entries forgotten, since New,
	// to stay within MaxRooms and MaxAddresses.
	EvictedRooms, EvictedAddresses uint64
	// DroppedRooms and DroppedAddresses count failures not counted, since
	// New, because every tracked entry was blocked and the cap was reached.
	DroppedRooms, DroppedAddresses uint64
}

// Stats returns the current counts.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	g.lockedSweep()
	s := Stats{
		Rooms:                len(g.rooms.entries),
		Addresses:            len(g.addrs.entries),
		BlockedRooms:         g.rooms.nblocked,
		QuarantinedAddresses: g.addrs.nblocked,
		EvictedRooms:         g.rooms.evicted,
		EvictedAddresses:     g.addrs.evicted,
		DroppedRooms:         g.rooms.dropped,
		DroppedAddresses:     g.addrs.dropped,
	}
	g.unlock()
	return s
}

// lockedSweep does the work of Sweep with g.mu held and returns the current
// time as an offset from the epoch. Offsets taken from the system clock use
// its monotonic reading, so wall clock steps do not move blocks.
func (g *Guard) lockedSweep() time.Duration {
	now := g.clock.Now().Sub(g.epoch)
	g.rooms.sweep(now, &g.pending)
	g.addrs.sweep(now, &g.pending)
	return now
}

// wall turns an offset from the epoch back into a time.
func (g *Guard) wall(d time.Duration) time.Time { return g.epoch.Add(d) }

// unlock releases g.mu and delivers pending alarm changes, one goroutine at
// a time and in order. A call that finds another goroutine delivering
// leaves its notices to that goroutine, which is what lets Events call back
// into the Guard without deadlock.
func (g *Guard) unlock() {
	if g.delivering || len(g.pending) == 0 {
		g.mu.Unlock()
		return
	}
	g.delivering = true
	batch := g.pending
	g.pending = nil
	g.mu.Unlock()

	done := false
	defer func() {
		if !done { // an Events method panicked; let the next call deliver
			g.mu.Lock()
			g.delivering = false
			g.mu.Unlock()
		}
	}()
	for {
		for _, n := range batch {
			if n.raised {
				g.events.Raised(n.alarm)
			} else {
				g.events.Cleared(n.alarm)
			}
		}
		g.mu.Lock()
		batch = g.pending
		g.pending = nil
		if len(batch) == 0 {
			g.delivering = false
			done = true
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// allowed reports whether addr is on the allow list.
func (g *Guard) allowed(addr netip.Addr) bool {
	if len(g.cfg.Allow) == 0 {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range g.cfg.Allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// source returns the prefix whose failures addr's count toward: the IPv4
// address, or the IPv6 /64 (with the default prefix lengths). All invalid
// addresses share the zero Prefix.
func (g *Guard) source(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := g.cfg.IPv6PrefixLen
	if addr.Is4() {
		bits = g.cfg.IPv4PrefixLen
	}
	p, _ := addr.Prefix(bits) // strips any zone; zero Prefix for an invalid addr
	return p
}

// sourceString names a source in an Alarm.
func sourceString(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "unknown"
	case p.IsSingleIP():
		return p.Addr().String()
	}
	return p.String()
}

// roomKey returns the form of a room alias used for counting: aliases are
// compared without regard to case.
func roomKey(alias string) string { return strings.ToLower(alias) }
