package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/guard"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
)

const (
	hostPIN  = "246810"
	guestPIN = "135790"
)

// openAccessServer runs a node with an injected clock and a PIN room
// "vault" (host and guest PINs) and an open room "lounge".
func openAccessServer(t *testing.T, clk *fakeclock.Clock, allow ...string) *testserver.Server {
	t.Helper()
	return openAccessServerWith(t, clk, server.Options{}, allow...)
}

func openAccessServerWith(t *testing.T, clk *fakeclock.Clock, opts server.Options, allow ...string) *testserver.Server {
	t.Helper()
	return openAccessServerConfig(t, clk, opts, func(c *config.Config) { c.AllowList = allow })
}

// openAccessServerConfig is openAccessServerWith with the configuration
// adjusted by change.
func openAccessServerConfig(t *testing.T, clk *fakeclock.Clock, opts server.Options, change func(*config.Config)) *testserver.Server {
	t.Helper()
	opts.Clock = clk
	srv := testserver.Start(t, testserver.Options{Server: opts, Config: change})
	hostHash, err := auth.HashPIN(hostPIN)
	if err != nil {
		t.Fatal(err)
	}
	guestHash, _ := auth.HashPIN(guestPIN)
	ctx := context.Background()
	_, err = srv.Store().CreateRoom(ctx, store.Room{Alias: "vault", DisplayName: "Vault", Access: store.AccessPIN,
		HostPINHash: hostHash, GuestPINHash: guestHash, AllowGuests: true, GuestsMayUnmute: true, GuestsMayPresent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "lounge", DisplayName: "Lounge"}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// attempt joins room with pin from source and returns the raw first answer.
func attempt(t *testing.T, srv *testserver.Server, source, room, pin string) []byte {
	t.Helper()
	c := dialFrom(t, srv, source)
	c.sendRaw(fmt.Sprintf(`{"v":1,"type":"join","id":"j1","room":%q,"name":"Mallory","pin":%q}`, room, pin))
	return c.readRaw()
}

func isWelcome(raw []byte) bool { return bytes.Contains(raw, []byte(`"type":"welcome"`)) }

func alarmsOf(srv *testserver.Server, kind guard.Kind) []guard.Alarm {
	var out []guard.Alarm
	for _, a := range srv.Alarms() {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// TestRoomBlock: the 21st wrong PIN within 10 minutes blocks the room, even
// for the right PIN, until 10 minutes have passed; the refusals for a wrong
// PIN, a blocked room, a missing PIN and an unknown room are the same bytes.
func TestRoomBlock(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)

	wrong := attempt(t, srv, "127.0.0.2", "vault", "000000")
	if isWelcome(wrong) {
		t.Fatal("a wrong PIN was let in")
	}
	unknown := attempt(t, srv, "127.0.0.22", "no-such-room", "123456")
	missing := attempt(t, srv, "127.0.0.23", "vault", "")
	// 20 wrong PINs in all, from several addresses (none reaches its own
	// limit): the room is not blocked yet.
	for i := 1; i < 20; i++ {
		clk.Advance(10 * time.Second)
		attempt(t, srv, fmt.Sprintf("127.0.0.%d", 2+i%5), "vault", "000000")
	}
	if raw := attempt(t, srv, "127.0.0.20", "vault", hostPIN); !isWelcome(raw) {
		t.Fatalf("after 20 wrong PINs the right PIN was refused: %s", raw)
	}
	// The 21st blocks it.
	attempt(t, srv, "127.0.0.7", "vault", "000000")
	blocked := attempt(t, srv, "127.0.0.21", "vault", hostPIN)
	if isWelcome(blocked) {
		t.Fatal("the right PIN entered a blocked room")
	}
	if got := alarmsOf(srv, guard.RoomBlocked); len(got) != 1 || got[0].Subject != "vault" {
		t.Fatalf("room-blocked alarms = %+v", got)
	}

	for name, raw := range map[string][]byte{"blocked room": blocked, "unknown room": unknown, "missing PIN": missing} {
		if !bytes.Equal(raw, wrong) {
			t.Errorf("%s answered\n  %s\nbut a wrong PIN answered\n  %s", name, raw, wrong)
		}
	}
	var e signal.Message
	if err := jsonUnmarshal(wrong, &e); err != nil || e.Code != signal.CodeRoomUnavailable || !e.Fatal || e.Text == "" {
		t.Errorf("refusal = %s, want a fatal room-unavailable with a message", wrong)
	}

	// Ten minutes later the block is over and the alarm clears.
	clk.Advance(10*time.Minute + time.Second)
	if raw := attempt(t, srv, "127.0.0.24", "vault", hostPIN); !isWelcome(raw) {
		t.Fatalf("10 minutes after the block the right PIN was refused: %s", raw)
	}
	if got := alarmsOf(srv, guard.RoomBlocked); len(got) != 0 {
		t.Errorf("room-blocked alarm still active: %+v", got)
	}
	checkAudit(t, srv, "room-blocked", 1)
	checkAudit(t, srv, "room-unblocked", 1)
	checkAudit(t, srv, "pin-failed", 21)
	checkAudit(t, srv, "room-access-refused", 2) // the missing PIN and the blocked attempt
}

// TestAllowList: an allow-listed address is never blocked and its failures
// do not count.
func TestAllowList(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk, "127.0.0.10/32")
	for i := 0; i < 30; i++ {
		attempt(t, srv, "127.0.0.10", "vault", "000000")
		attempt(t, srv, "127.0.0.10", fmt.Sprintf("scan-%d", i), "")
	}
	if got := srv.Alarms(); len(got) != 0 {
		t.Fatalf("allow-listed failures raised alarms: %+v", got)
	}
	if raw := attempt(t, srv, "127.0.0.10", "vault", hostPIN); !isWelcome(raw) {
		t.Fatalf("allow-listed address refused: %s", raw)
	}
	if raw := attempt(t, srv, "127.0.0.11", "vault", hostPIN); !isWelcome(raw) {
		t.Fatalf("other address refused: %s", raw)
	}
}

// TestQuarantine: scanning 21 unknown aliases quarantines the address for
// every room; other addresses still get in.
func TestQuarantine(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)
	for i := 0; i < 21; i++ {
		attempt(t, srv, "127.0.0.30", fmt.Sprintf("guess-%d", i), "")
	}
	if got := alarmsOf(srv, guard.AddressQuarantined); len(got) != 1 || got[0].Subject != "127.0.0.30" {
		t.Fatalf("quarantine alarms = %+v", got)
	}
	if raw := attempt(t, srv, "127.0.0.30", "lounge", ""); isWelcome(raw) {
		t.Fatal("a quarantined address entered an open room")
	}
	if raw := attempt(t, srv, "127.0.0.31", "lounge", ""); !isWelcome(raw) {
		t.Fatalf("another address was refused: %s", raw)
	}
	clk.Advance(10*time.Minute + time.Second)
	if raw := attempt(t, srv, "127.0.0.30", "lounge", ""); !isWelcome(raw) {
		t.Fatalf("address still refused after its quarantine: %s", raw)
	}
	checkAudit(t, srv, "address-quarantined", 1)
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// checkAudit asserts that at least min audit events of action happened:
// records, plus the repeats that aggregated records count.
func checkAudit(t *testing.T, srv *testserver.Server, action string, min int) {
	t.Helper()
	if n := auditCount(t, srv, action); n < min {
		t.Errorf("audit log has %d %q events, want at least %d", n, action, min)
	}
}

// auditCount flushes the aggregated failures and returns how many events
// of action the audit log holds, counting the repeats of aggregated
// records.
func auditCount(t *testing.T, srv *testserver.Server, action string) int {
	t.Helper()
	if err := srv.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	events, err := srv.AuditEvents(context.Background(), action)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	n := 0
	for _, e := range events {
		n++
		if r, err := strconv.Atoi(e.Details["repeated"]); err == nil {
			n += r - 1 // the record stands for r events
		}
	}
	return n
}
