package guard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

var epoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// recorder is an Events that remembers every call.
type recorder struct {
	mu      sync.Mutex
	raised  []Alarm
	cleared []Alarm
	order   []string // "+subject" for raised, "-subject" for cleared
}

func (r *recorder) Raised(a Alarm) {
	r.mu.Lock()
	r.raised = append(r.raised, a)
	r.order = append(r.order, "+"+a.Subject)
	r.mu.Unlock()
}

func (r *recorder) Cleared(a Alarm) {
	r.mu.Lock()
	r.cleared = append(r.cleared, a)
	r.order = append(r.order, "-"+a.Subject)
	r.mu.Unlock()
}

func (r *recorder) counts() (raised, cleared int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.raised), len(r.cleared)
}

type fixture struct {
	t     *testing.T
	g     *Guard
	clock *fakeclock.Clock
	ev    *recorder
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: fakeclock.New(epoch), ev: &recorder{}}
	g, err := New(cfg, f.clock, f.ev)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.g = g
	return f
}

// fails reports n failures of one reason from addr on room.
func (f *fixture) fails(n int, addr netip.Addr, room string, reason Reason) {
	for range n {
		f.g.Fail(addr, room, reason)
	}
}

func (f *fixture) wantRefused(addr netip.Addr, room string, want bool) {
	f.t.Helper()
	err := f.g.Check(addr, room)
	switch {
	case want && !errors.Is(err, ErrRefused):
		f.t.Fatalf("Check(%v, %q) at +%v = %v, want ErrRefused", addr, room, f.clock.Now().Sub(epoch), err)
	case !want && err != nil:
		f.t.Fatalf("Check(%v, %q) at +%v = %v, want nil", addr, room, f.clock.Now().Sub(epoch), err)
	}
}

// addrN returns a distinct IPv4 address for each n, so that room tests are
// not disturbed by address quarantine.
func addrN(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)})
}

var (
	attacker  = netip.MustParseAddr("203.0.113.66")
	bystander = netip.MustParseAddr("192.0.2.10")
)

func TestRoomBlock(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for i := range 20 {
		f.g.Fail(addrN(i), "board", WrongPIN)
	}
	f.wantRefused(bystander, "board", false) // 20 wrong PINs are tolerated
	if got := f.g.Active(); len(got) != 0 {
		t.Fatalf("Active after 20 wrong PINs = %v, want none", got)
	}

	f.g.Fail(addrN(20), "Board", WrongPIN) // the 21st, in other case
	f.wantRefused(bystander, "board", true)
	f.wantRefused(bystander, "BOARD", true)  // aliases ignore case
	f.wantRefused(bystander, "lobby", false) // other rooms are not affected

	f.clock.Advance(10*time.Minute - time.Nanosecond)
	f.wantRefused(bystander, "board", true) // the right PIN is still refused
	f.clock.Advance(time.Nanosecond)
	f.wantRefused(bystander, "board", false)
}

func TestRoomCountStartsAgainAfterBlock(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for i := range 21 {
		f.g.Fail(addrN(i), "board", WrongPIN)
	}
	f.wantRefused(bystander, "board", true)
	// Failures reported while blocked (a race with Check) do not extend
	// the block or count toward the next one.
	for i := range 50 {
		f.g.Fail(addrN(100+i), "board", WrongPIN)
	}
	f.clock.Advance(10 * time.Minute)
	f.wantRefused(bystander, "board", false)
	for i := range 20 {
		f.g.Fail(addrN(200+i), "board", WrongPIN)
	}
	f.wantRefused(bystander, "board", false)
	f.g.Fail(addrN(300), "board", WrongPIN)
	f.wantRefused(bystander, "board", true)
}

// step is a batch of failures at an offset from the start.
type step struct {
	at time.Duration
	n  int
}

func TestSlidingWindow(t *testing.T) {
	tests := []struct {
		name    string
		steps   []step
		blocked bool
	}{
		{"21 at once", []step{{0, 21}}, true},
		{"20 then one exactly a window later", []step{{0, 20}, {10 * time.Minute, 1}}, false},
		{"20 then one just inside the window", []step{{0, 20}, {10*time.Minute - time.Nanosecond, 1}}, true},
		{"spread over the window", []step{{0, 7}, {4 * time.Minute, 7}, {9 * time.Minute, 7}}, true},
		{"oldest slid out", []step{{0, 10}, {5 * time.Minute, 10}, {11 * time.Minute, 10}}, false},
		{"oldest slid out, then one more", []step{{0, 10}, {5 * time.Minute, 10}, {11 * time.Minute, 11}}, true},
		{"one every 30s", func() []step {
			var s []step
			for i := range 100 {
				s = append(s, step{time.Duration(i) * 30 * time.Second, 1})
			}
			return s
		}(), false},
		{"one every 28s", func() []step {
			var s []step
			for i := range 22 {
				s = append(s, step{time.Duration(i) * 28 * time.Second, 1})
			}
			return s
		}(), true},
	}
	for _, tt := range tests {
		for _, kind := range []string{"room", "address"} {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				f := newFixture(t, DefaultConfig())
				at, k := time.Duration(0), 0
				for _, s := range tt.steps {
					f.clock.Advance(s.at - at)
					at = s.at
					for range s.n {
						if kind == "room" {
							f.g.Fail(addrN(k), "board", WrongPIN)
						} else {
							f.g.Fail(attacker, fmt.Sprintf("nosuch%d", k), UnknownRoom)
						}
						k++
					}
				}
				if kind == "room" {
					f.wantRefused(bystander, "board", tt.blocked)
				} else {
					f.wantRefused(attacker, "board", tt.blocked)
				}
			})
		}
	}
}

func TestAddressQuarantine(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for i := range 20 {
		f.g.Fail(attacker, fmt.Sprintf("guess-%d", i), UnknownRoom)
	}
	f.wantRefused(attacker, "board", false)
	f.g.Fail(attacker, "guess-20", UnknownRoom)

	for _, room := range []string{"board", "lobby", "guess-0", "anything"} {
		f.wantRefused(attacker, room, true)
		f.wantRefused(bystander, room, false)
	}
	if s := f.g.Stats(); s.Rooms != 0 {
		t.Errorf("Stats().Rooms = %d after unknown aliases, want 0 (no state per unknown alias)", s.Rooms)
	}
	f.clock.Advance(10*time.Minute - time.Nanosecond)
	f.wantRefused(attacker, "board", true)
	f.clock.Advance(time.Nanosecond)
	f.wantRefused(attacker, "board", false)
}

func TestAddressCountsWrongPINsOnAnyRoom(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for i := range 10 {
		f.g.Fail(attacker, fmt.Sprintf("room%d", i), WrongPIN)
	}
	for i := range 10 {
		f.g.Fail(attacker, fmt.Sprintf("nosuch%d", i), UnknownRoom)
	}
	f.wantRefused(attacker, "room0", false)
	f.g.Fail(attacker, "room0", WrongPIN)
	f.wantRefused(attacker, "room0", true)
	f.wantRefused(bystander, "room0", false) // one wrong PIN per room: no room block
}

func TestSources(t *testing.T) {
	tests := []struct {
		name  string
		a, b  string
		share bool
	}{
		{"IPv6 same /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"IPv6 other /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv6 zone ignored", "fe80::1%eth0", "fe80::2%eth1", true},
		{"IPv4 same address", "192.0.2.1", "192.0.2.1", true},
		{"IPv4 neighbour", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is IPv4", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"IPv4-mapped are not one /64", "::ffff:192.0.2.1", "::ffff:198.51.100.1", false},
		{"invalid addresses share", "", "", true},
	}
	parse := func(s string) netip.Addr {
		if s == "" {
			return netip.Addr{}
		}
		return netip.MustParseAddr(s)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, DefaultConfig())
			a, b := parse(tt.a), parse(tt.b)
			f.fails(20, a, "x", UnknownRoom)
			f.g.Fail(b, "x", UnknownRoom)
			f.wantRefused(b, "board", tt.share)
			f.wantRefused(a, "board", tt.share)
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		addr, want string
	}{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"", "unknown"},
	}
	for _, tt := range tests {
		f := newFixture(t, DefaultConfig())
		var a netip.Addr
		if tt.addr != "" {
			a = netip.MustParseAddr(tt.addr)
		}
		f.fails(21, a, "Board", WrongPIN)
		got := f.g.Active()
		if len(got) != 2 {
			t.Fatalf("%s: Active = %v, want a room and an address", tt.addr, got)
		}
		subjects := map[Kind]string{got[0].Kind: got[0].Subject, got[1].Kind: got[1].Subject}
		if subjects[AddressQuarantined] != tt.want || subjects[RoomBlocked] != "board" {
			t.Errorf("%s: subjects = %v, want address %q and room \"board\"", tt.addr, subjects, tt.want)
		}
	}
}

func TestAllowList(t *testing.T) {
	allow, err := ParseAllow([]string{"192.0.2.10", "198.51.100.0/24", "2001:db8:aaaa::/48"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr    string
		allowed bool
	}{
		{"192.0.2.10", true},
		{"::ffff:192.0.2.10", true},
		{"192.0.2.11", false},
		{"198.51.100.0", true},
		{"198.51.100.255", true},
		{"198.51.101.1", false},
		{"2001:db8:aaaa:ffff::1", true},
		{"2001:db8:aaab::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Allow = allow
			f := newFixture(t, cfg)
			addr := netip.MustParseAddr(tt.addr)

			// Its own failures: 50 wrong PINs on one room.
			f.fails(50, addr, "board", WrongPIN)
			f.fails(50, addr, "nosuch", UnknownRoom)
			f.wantRefused(addr, "board", !tt.allowed)
			observer := netip.MustParseAddr("203.0.113.200")
			f.wantRefused(observer, "board", !tt.allowed) // room blocked only if counted
			if tt.allowed {
				if s := f.g.Stats(); s.Rooms != 0 || s.Addresses != 0 {
					t.Errorf("allowed failures were tracked: %+v", s)
				}
			}

			// A room blocked by others does not keep it out.
			for i := range 21 {
				f.g.Fail(addrN(i), "lobby", WrongPIN)
			}
			f.wantRefused(observer, "lobby", true)
			f.wantRefused(addr, "lobby", !tt.allowed)
		})
	}
}

func TestAlarms(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for i := range 21 {
		f.g.Fail(addrN(i), "board", WrongPIN)
	}
	f.clock.Advance(time.Minute)
	f.fails(21, attacker, "nosuch", UnknownRoom)
	f.fails(30, attacker, "nosuch", UnknownRoom) // no second alarm while quarantined

	roomAlarm := Alarm{Kind: RoomBlocked, Subject: "board", Since: epoch,
		Until: epoch.Add(10 * time.Minute), Failures: 21}
	addrAlarm := Alarm{Kind: AddressQuarantined, Subject: "203.0.113.66", Since: epoch.Add(time.Minute),
		Until: epoch.Add(11 * time.Minute), Failures: 21}

	if got := f.ev.raised; len(got) != 2 || got[0] != roomAlarm || got[1] != addrAlarm {
		t.Fatalf("Raised calls = %+v, want %+v then %+v", got, roomAlarm, addrAlarm)
	}
	if got := f.g.Active(); len(got) != 2 || got[0] != roomAlarm || got[1] != addrAlarm {
		t.Fatalf("Active = %+v, want both alarms", got)
	}
	if len(f.ev.cleared) != 0 {
		t.Fatalf("Cleared called early: %+v", f.ev.cleared)
	}

	// Nobody calls in; the periodic Sweep clears each alarm once, on time.
	f.clock.Advance(9*time.Minute - time.Nanosecond)
	f.g.Sweep()
	if len(f.ev.cleared) != 0 {
		t.Fatalf("Cleared before the block ended: %+v", f.ev.cleared)
	}
	f.clock.Advance(time.Nanosecond)
	f.g.Sweep()
	f.g.Sweep()
	if got := f.ev.cleared; len(got) != 1 || got[0] != roomAlarm {
		t.Fatalf("Cleared calls = %+v, want the room alarm once", got)
	}
	if got := f.g.Active(); len(got) != 1 || got[0] != addrAlarm {
		t.Fatalf("Active = %+v, want the address alarm", got)
	}
	f.clock.Advance(time.Minute)
	f.g.Sweep()
	f.g.Sweep()
	if got := f.ev.cleared; len(got) != 2 || got[1] != addrAlarm {
		t.Fatalf("Cleared calls = %+v, want the address alarm once more", got)
	}
	if got := f.g.Active(); len(got) != 0 {
		t.Fatalf("Active = %+v after all blocks ended, want none", got)
	}
	want := "+board +203.0.113.66 -board -203.0.113.66"
	if got := strings.Join(f.ev.order, " "); got != want {
		t.Errorf("event order = %q, want %q", got, want)
	}
}

func TestAlarmClearedByAnyCall(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	f.fails(21, attacker, "x", UnknownRoom)
	f.clock.Advance(10 * time.Minute)
	f.wantRefused(bystander, "board", false) // an unrelated Check sweeps
	if raised, cleared := f.ev.counts(); raised != 1 || cleared != 1 {
		t.Fatalf("raised %d, cleared %d; want 1 and 1", raised, cleared)
	}
}

// reentrant calls back into the Guard from its events.
type reentrant struct {
	g     *Guard
	calls int
}

func (r *reentrant) Raised(a Alarm) {
	r.calls++
	_ = r.g.Active()
	_ = r.g.Check(attacker, "board")
	if a.Subject == attacker.String() {
		r.g.Fail(bystander, "x", UnknownRoom)
		r.g.Fail(bystander, "x", UnknownRoom)
	}
}

func (r *reentrant) Cleared(Alarm) { r.calls++; r.g.Sweep() }

func TestEventsMayCallBack(t *testing.T) {
	clock := fakeclock.New(epoch)
	cfg := DefaultConfig()
	cfg.AddressFailures = 1
	ev := &reentrant{}
	g, err := New(cfg, clock, ev)
	if err != nil {
		t.Fatal(err)
	}
	ev.g = g
	// The attacker's alarm makes Raised fail the bystander twice over, which
	// raises the bystander's alarm from inside Raised.
	g.Fail(attacker, "x", UnknownRoom)
	g.Fail(attacker, "x", UnknownRoom)
	if got := len(g.Active()); got != 2 {
		t.Fatalf("Active has %d alarms, want 2", got)
	}
	clock.Advance(time.Hour)
	g.Sweep()
	if ev.calls != 4 {
		t.Fatalf("events called %d times, want 4", ev.calls)
	}
}

func TestEviction(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxAddresses = 3
	cfg.AddressFailures = 2
	f := newFixture(t, cfg)
	a, b, c, d := addrN(1), addrN(2), addrN(3), addrN(4)

	f.fails(2, a, "x", UnknownRoom) // a: 2 failures, oldest
	f.clock.Advance(time.Second)
	f.fails(1, b, "x", UnknownRoom)
	f.clock.Advance(time.Second)
	f.fails(1, c, "x", UnknownRoom)
	f.clock.Advance(time.Second)
	f.fails(1, d, "x", UnknownRoom) // evicts a, the oldest
	if s := f.g.Stats(); s.Addresses != 3 || s.EvictedAddresses != 1 {
		t.Fatalf("Stats = %+v, want 3 addresses and 1 eviction", s)
	}
	f.fails(1, a, "x", UnknownRoom) // a starts again from 1 (evicts b)
	f.wantRefused(a, "board", false)

	// Quarantined entries are never evicted.
	f.fails(2, a, "x", UnknownRoom) // a quarantined
	f.wantRefused(a, "board", true)
	for i := range 10 {
		f.g.Fail(addrN(100+i), "x", UnknownRoom)
	}
	f.wantRefused(a, "board", true)
	if s := f.g.Stats(); s.Addresses != 3 || s.QuarantinedAddresses != 1 {
		t.Fatalf("Stats = %+v, want 3 addresses, 1 quarantined", s)
	}

	// When every entry is quarantined, new sources are not tracked.
	f.fails(3, addrN(108), "x", UnknownRoom)
	f.fails(3, addrN(109), "x", UnknownRoom)
	f.fails(3, addrN(200), "x", UnknownRoom)
	s := f.g.Stats()
	if s.QuarantinedAddresses != 3 || s.DroppedAddresses != 3 {
		t.Fatalf("Stats = %+v, want 3 quarantined and 3 dropped", s)
	}
	f.wantRefused(addrN(200), "board", false)
}

func TestRoomCap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRooms = 2
	f := newFixture(t, cfg)
	for i := range 10 {
		f.g.Fail(addrN(i), fmt.Sprintf("room%d", i), WrongPIN)
	}
	if s := f.g.Stats(); s.Rooms != 2 || s.EvictedRooms != 8 {
		t.Fatalf("Stats = %+v, want 2 rooms and 8 evictions", s)
	}
}

func TestSweepForgetsIdleCounters(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	f.fails(5, attacker, "board", WrongPIN)
	f.clock.Advance(5 * time.Minute)
	f.fails(5, bystander, "lobby", WrongPIN)
	if s := f.g.Stats(); s.Addresses != 2 || s.Rooms != 2 {
		t.Fatalf("Stats = %+v, want 2 addresses and 2 rooms", s)
	}
	f.clock.Advance(5 * time.Minute)
	f.g.Sweep()
	if s := f.g.Stats(); s.Addresses != 1 || s.Rooms != 1 {
		t.Fatalf("Stats = %+v, want 1 address and 1 room", s)
	}
	f.clock.Advance(5 * time.Minute)
	if s := f.g.Stats(); s.Addresses != 0 || s.Rooms != 0 {
		t.Fatalf("Stats = %+v, want nothing tracked", s)
	}
}

func TestConfig(t *testing.T) {
	g, err := New(Config{}, nil, nil)
	if err != nil {
		t.Fatalf("New(zero Config): %v", err)
	}
	if want := DefaultConfig(); g.cfg.RoomFailures != want.RoomFailures || g.cfg.AddressQuarantine != want.AddressQuarantine ||
		g.cfg.IPv6PrefixLen != 64 || g.cfg.MaxAddresses != want.MaxAddresses || g.cfg.SweepInterval != want.SweepInterval {
		t.Errorf("zero Config became %+v, want the defaults", g.cfg)
	}
	bad := []struct {
		name string
		edit func(*Config)
	}{
		{"negative failures", func(c *Config) { c.RoomFailures = -1 }},
		{"negative window", func(c *Config) { c.AddressWindow = -time.Second }},
		{"IPv6 prefix too long", func(c *Config) { c.IPv6PrefixLen = 129 }},
		{"IPv4 prefix too long", func(c *Config) { c.IPv4PrefixLen = 33 }},
		{"invalid allow prefix", func(c *Config) { c.Allow = []netip.Prefix{{}} }},
	}
	for _, tt := range bad {
		cfg := DefaultConfig()
		tt.edit(&cfg)
		if _, err := New(cfg, nil, nil); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

func TestConfigPrefixLengths(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IPv4PrefixLen = 24
	cfg.IPv6PrefixLen = 48
	f := newFixture(t, cfg)
	f.fails(21, netip.MustParseAddr("192.0.2.1"), "x", UnknownRoom)
	f.wantRefused(netip.MustParseAddr("192.0.2.200"), "board", true)
	f.fails(21, netip.MustParseAddr("2001:db8:1:1::1"), "x", UnknownRoom)
	f.wantRefused(netip.MustParseAddr("2001:db8:1:ffff::1"), "board", true)
	f.wantRefused(netip.MustParseAddr("2001:db8:2::1"), "board", false)
}

func TestAllowMappedPrefix(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("::ffff:198.51.100.0/120")}
	f := newFixture(t, cfg)
	addr := netip.MustParseAddr("198.51.100.9")
	f.fails(30, addr, "x", UnknownRoom)
	f.wantRefused(addr, "board", false)
}

func TestParseAllow(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for an error
	}{
		{"192.0.2.7", "192.0.2.7/32"},
		{" 192.0.2.7 ", "192.0.2.7/32"},
		{"192.0.2.77/24", "192.0.2.0/24"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/48", "2001:db8::/48"},
		{"fe80::1%eth0", "fe80::1/128"},
		{"192.0.2.300", ""},
		{"192.0.2.0/33", ""},
		{"example.org", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := ParseAllow([]string{tt.in})
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseAllow(%q) = %v, want an error", tt.in, got)
		case tt.want != "" && err != nil:
			t.Errorf("ParseAllow(%q): %v", tt.in, err)
		case tt.want != "" && got[0].String() != tt.want:
			t.Errorf("ParseAllow(%q) = %v, want %s", tt.in, got[0], tt.want)
		}
	}
}

func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "2001:db8::/48", "::ffff:1.2.3.4/120", "fe80::1%eth0", "/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseAllow([]string{s})
		if err != nil {
			return
		}
		if len(got) != 1 || !got[0].IsValid() {
			t.Fatalf("ParseAllow(%q) = %v without error", s, got)
		}
		cfg := DefaultConfig()
		cfg.Allow = got
		if _, err := New(cfg, nil, nil); err != nil {
			t.Fatalf("New with ParseAllow(%q) = %v: %v", s, got, err)
		}
	})
}

// chanEvents sends cleared alarms on a channel.
type chanEvents chan Alarm

func (chanEvents) Raised(Alarm)      {}
func (c chanEvents) Cleared(a Alarm) { c <- a }

func TestRunClearsWithoutCalls(t *testing.T) {
	clock := fakeclock.New(epoch)
	cfg := DefaultConfig()
	cfg.SweepInterval = time.Minute
	ev := make(chanEvents, 1)
	g, err := New(cfg, clock, ev)
	if err != nil {
		t.Fatal(err)
	}
	for range 21 {
		g.Fail(attacker, "x", UnknownRoom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	armed := make(chan time.Duration)
	clock.NotifyArmed(armed)
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if d := <-armed; d != cfg.SweepInterval {
		t.Fatalf("Run armed a timer of %v, want the sweep interval %v", d, cfg.SweepInterval)
	}
	clock.NotifyArmed(nil)

	// No call to the Guard: only Run's sweeps on the clock clear it.
	clock.Advance(10 * time.Minute)
	select {
	case a := <-ev:
		if a.Kind != AddressQuarantined || a.Subject != attacker.String() {
			t.Fatalf("cleared %+v, want the attacker's quarantine", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not clear the alarm")
	}
}

func TestConcurrent(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				addr := addrN(w*10 + i%10)
				room := fmt.Sprintf("room%d", i%7)
				if f.g.Check(addr, room) == nil {
					reason := WrongPIN
					if i%3 == 0 {
						reason = UnknownRoom
					}
					f.g.Fail(addr, room, reason)
				}
				switch i % 100 {
				case 0:
					f.clock.Advance(time.Minute)
				case 1:
					f.g.Sweep()
				case 2:
					_ = f.g.Active()
				case 3:
					_ = f.g.Stats()
				}
			}
		}()
	}
	wg.Wait()
	f.clock.Advance(time.Hour)
	f.g.Sweep()
	raised, cleared := f.ev.counts()
	if raised == 0 || raised != cleared {
		t.Fatalf("raised %d alarms, cleared %d; want equal and nonzero", raised, cleared)
	}
	if s := f.g.Stats(); s.Rooms != 0 || s.Addresses != 0 {
		t.Fatalf("Stats = %+v after an hour, want nothing tracked", s)
	}
	// Every alarm was cleared after it was raised.
	seen := map[string]int{}
	for _, e := range f.ev.order {
		seen[e[1:]] += map[byte]int{'+': 1, '-': -1}[e[0]]
		if v := seen[e[1:]]; v < 0 || v > 1 {
			t.Fatalf("events out of order for %s: %v", e[1:], f.ev.order)
		}
	}
}

func TestRing(t *testing.T) {
	var r ring
	const size = 21
	for i := range 100 {
		r.expire(time.Duration(i - 30)) // keep the last 30, but at most size
		r.push(time.Duration(i), size)
		want := min(i+1, 30, size)
		if r.len() != want || r.newest() != time.Duration(i) {
			t.Fatalf("after push %d: len %d newest %d, want %d and %d", i, r.len(), r.newest(), want, i)
		}
		for k := range r.n {
			if got := r.t[(r.head+k)%len(r.t)]; got != time.Duration(i-r.n+1+k) {
				t.Fatalf("after push %d: element %d is %d, want %d", i, k, got, i-r.n+1+k)
			}
		}
	}
	if len(r.t) != size {
		t.Errorf("ring grew to %d, want %d", len(r.t), size)
	}
}

// BenchmarkCheckFail is the steady state of a distributed guessing attack:
// every attempt is checked and fails, from many sources on many rooms, with
// time passing so that counters are created, slide and are forgotten.
func BenchmarkCheckFail(b *testing.B) {
	clock := fakeclock.New(epoch)
	g, err := New(DefaultConfig(), clock, nil)
	if err != nil {
		b.Fatal(err)
	}
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = addrN(i)
	}
	rooms := make([]string, 1000)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clock.Advance(100 * time.Millisecond)
		a, room := addrs[i%len(addrs)], rooms[i%len(rooms)]
		if g.Check(a, room) == nil {
			reason := WrongPIN
			if i%2 == 0 {
				reason = UnknownRoom
			}
			g.Fail(a, room, reason)
		}
		i++
	}
	if s := g.Stats(); s.BlockedRooms+s.QuarantinedAddresses != 0 {
		b.Fatalf("benchmark blocked something: %+v", s)
	}
}

// BenchmarkCheckFailParallel is a flood of unknown aliases from a whole IPv6
// /48, every /64 a new source, from all CPUs.
func BenchmarkCheckFailParallel(b *testing.B) {
	g, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, byte(i >> 8), byte(i), 15: 1})
			if g.Check(a, "board") == nil {
				g.Fail(a, "board", UnknownRoom)
			}
			i++
		}
	})
}
