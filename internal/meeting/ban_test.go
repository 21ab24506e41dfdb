package meeting

import (
	"net/netip"
	"testing"
)

// TestHardening09BanBySource: a removed guest is barred by its source as
// the gate names it (an IPv6 /64), so a fresh privacy address in the same
// /64 does not get it back in, not even with the host PIN; a removed
// account is barred by account and by source. Another /64 gets in.
func TestHardening09BanBySource(t *testing.T) {
	m := NewManager(Config{}, nil, nil)
	r := newRoom(m, Admission{Alias: "board", Name: "Board"})
	defer r.stopTimers()
	newP := func(id, addr, source string, role Role, user int64) *Participant {
		return &Participant{id: id, addr: netip.MustParseAddr(addr), source: source, role: role, userID: user, room: r, mgr: m, log: m.log}
	}
	host := newP("h", "2001:db8:9::1", "2001:db8:9::/64", RoleHost, 7)
	guest := newP("g", "2001:db8:1:2::10", "2001:db8:1:2::/64", RoleGuest, 0)
	acct := newP("a", "2001:db8:3:4::10", "2001:db8:3:4::/64", RoleParticipant, 42)
	r.order = []*Participant{host, guest, acct}
	for _, q := range []*Participant{guest, acct} {
		if err := host.removeParticipant(q.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		p       *Participant
		refused bool
	}{
		{"guest with a new privacy address in its /64", newP("g2", "2001:db8:1:2:abcd::99", "2001:db8:1:2::/64", RoleGuest, 0), true},
		{"guest back with the host PIN", newP("g3", "2001:db8:1:2::10", "2001:db8:1:2::/64", RoleHost, 0), true},
		{"removed account without its cookie", newP("a2", "2001:db8:3:4::11", "2001:db8:3:4::/64", RoleParticipant, 0), true},
		{"removed account from elsewhere", newP("a3", "2001:db8:5:6::1", "2001:db8:5:6::/64", RoleParticipant, 42), true},
		{"another account behind the same NAT", newP("o", "2001:db8:1:2::10", "2001:db8:1:2::/64", RoleParticipant, 43), false},
		{"a guest from another /64", newP("x", "2001:db8:7:8::1", "2001:db8:7:8::/64", RoleGuest, 0), false},
	} {
		err := r.reserve(tc.p, 100)
		if (err != nil) != tc.refused {
			t.Errorf("%s: reserve = %v, want refused %v", tc.name, err, tc.refused)
		}
		if err == nil {
			r.joining--
		}
	}
}
