package server_test

// Regression tests of docs/hardening.md: one per finding of the review,
// named TestHardeningNN after it. Each failed on the code before its fix.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/guard"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
)

// cheapArgon2 hashes test passwords quickly; verification reads the costs
// from the hash, so the server's checks stay real.
var cheapArgon2 = auth.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

const testPassword = "Correct-Horse-42"

// addUser creates an account with testPassword.
func addUser(t *testing.T, srv *testserver.Server, name string, role store.Role, changedAt time.Time, mustChange bool) store.User {
	t.Helper()
	hash, err := cheapArgon2.Hash(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Store().CreateUser(context.Background(), store.User{Username: name, DisplayName: name, PasswordHash: hash,
		Role: role, Enabled: true, PasswordChangedAt: changedAt, MustChangePassword: mustChange})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// signIn logs name in from a new client and keeps its CSRF token.
func signIn(t *testing.T, srv *testserver.Server, name string) *apiClient {
	t.Helper()
	c := newAPIClient(t, srv)
	st, body, _ := c.do("POST", "/api/login", map[string]string{"username": name, "password": testPassword}, false)
	if st != http.StatusOK {
		t.Fatalf("login %s: %d %v", name, st, body)
	}
	c.csrf, _ = body["csrf"].(string)
	return c
}

// TestHardening07EqualPINs: a room's host and guest PINs cannot be made
// equal, through the API (creation, or an update of either PIN) or the
// CLI, since with equal PINs every guest would enter as host.
func TestHardening07EqualPINs(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	addUser(t, srv, "root", store.RoleAdmin, time.Now(), false)
	c := signIn(t, srv, "root")
	same := map[string]any{"alias": "vault", "access": "pin", "hostPin": "246810", "guestPin": "246810"}
	if st, body, _ := c.do("POST", "/api/rooms", same, true); st != http.StatusBadRequest || errCode(body) != "invalid-pin" {
		t.Fatalf("create with equal PINs: %d %v", st, body)
	}
	ok := map[string]any{"alias": "vault", "access": "pin", "hostPin": "246810", "guestPin": "135790"}
	if st, body, _ := c.do("POST", "/api/rooms", ok, true); st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, body)
	}
	for _, patch := range []map[string]any{{"guestPin": "246810"}, {"hostPin": "135790"}} {
		if st, body, _ := c.do("PATCH", "/api/rooms/vault", patch, true); st != http.StatusBadRequest || errCode(body) != "invalid-pin" {
			t.Fatalf("update %v: %d %v", patch, st, body)
		}
	}
	if st, body, _ := c.do("PATCH", "/api/rooms/vault", map[string]any{"guestPin": "112233"}, true); st != http.StatusOK {
		t.Fatalf("a different guest PIN: %d %v", st, body)
	}

	// The CLI: conclave admin create-room with equal PINs fails and
	// creates nothing.
	if testing.Short() {
		return
	}
	dir := t.TempDir()
	bin := dir + "/conclave"
	if out, err := exec.Command("go", "build", "-o", bin, "conclave/cmd/conclave").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "admin", "create-room", "-alias", "board", "-access", "pin", "-host-pin", "246810", "-guest-pin", "246810")
	cmd.Env = append(os.Environ(), "CONCLAVE_DATA="+dir+"/data")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must differ") {
		t.Fatalf("CLI with equal PINs: err %v, output %s", err, out)
	}
}

// TestHardening11AdminIdleTimeout: the admin page's periodic refresh does
// not keep an administrator's session alive; after 5 minutes without the
// administrator doing anything it has ended, while a real request resets
// the idle time.
func TestHardening11AdminIdleTimeout(t *testing.T) {
	clk := fakeclock.New(time.Now()) // the cookie jar expires cookies by the real clock
	srv := openAccessServer(t, clk)
	addUser(t, srv, "root", store.RoleAdmin, clk.Now(), false)
	c := signIn(t, srv, "root")
	poll := func() int {
		req, _ := http.NewRequest("GET", c.base+"/api/rooms", nil)
		req.Header.Set("X-Conclave-Background", "1")
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 19; i++ { // 4 min 45 s of refreshes every 15 s
		clk.Advance(15 * time.Second)
		if st := poll(); st != http.StatusOK {
			t.Fatalf("refresh %d: %d", i+1, st)
		}
	}
	// A click (a request without the background mark) counts as activity.
	if st, _, _ := c.do("GET", "/api/rooms", nil, false); st != http.StatusOK {
		t.Fatalf("click: %d", st)
	}
	for i := 0; i < 19; i++ {
		clk.Advance(15 * time.Second)
		if st := poll(); st != http.StatusOK {
			t.Fatalf("refresh %d after the click: %d", i+1, st)
		}
	}
	clk.Advance(15 * time.Second) // 5 minutes since the click
	if st := poll(); st != http.StatusUnauthorized {
		t.Fatalf("refresh 5 minutes after the last activity: %d, want 401", st)
	}
	if st, _, _ := c.do("GET", "/api/me", nil, false); st != http.StatusUnauthorized {
		t.Fatalf("the session survived its idle timeout: %d", st)
	}
}

// TestHardening12PasswordChangeEndsOtherSessions: changing one's password
// signs out every other session of the account, and keeps this one.
func TestHardening12PasswordChangeEndsOtherSessions(t *testing.T) {
	clk := fakeclock.New(time.Now()) // the cookie jar expires cookies by the real clock
	srv := openAccessServer(t, clk)
	addUser(t, srv, "ann", store.RoleUser, clk.Now().Add(-30*24*time.Hour), false)
	laptop, stolen := signIn(t, srv, "ann"), signIn(t, srv, "ann")
	st, body, _ := laptop.do("POST", "/api/password", map[string]string{"oldPassword": testPassword, "newPassword": "Another-Horse-77"}, true)
	if st != http.StatusNoContent {
		t.Fatalf("password change: %d %v", st, body)
	}
	if st, _, _ := stolen.do("GET", "/api/me", nil, false); st != http.StatusUnauthorized {
		t.Fatalf("the other session survived the password change: %d", st)
	}
	if st, _, _ := laptop.do("GET", "/api/me", nil, false); st != http.StatusOK {
		t.Fatalf("the session that changed the password was ended: %d", st)
	}
}

// TestHardening13ForcedPasswordChange: an account whose password was reset
// by an administrator or has expired gets no E2EE credential and does not
// enter meetings as itself until the password is changed.
func TestHardening13ForcedPasswordChange(t *testing.T) {
	clk := fakeclock.New(time.Now()) // the cookie jar expires cookies by the real clock
	srv := openAccessServer(t, clk)
	ctx := context.Background()
	if _, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "staff", DisplayName: "Staff", Access: store.AccessAccounts}); err != nil {
		t.Fatal(err)
	}
	addUser(t, srv, "reset", store.RoleUser, clk.Now(), true)
	addUser(t, srv, "old", store.RoleUser, clk.Now().Add(-61*24*time.Hour), false)
	addUser(t, srv, "fine", store.RoleUser, clk.Now().Add(-30*24*time.Hour), false)
	key := map[string]string{"devicePublicKey": "AAAA"}
	for _, name := range []string{"reset", "old", "fine"} {
		c := signIn(t, srv, name)
		st, body, _ := c.do("POST", "/api/e2ee/credential", key, true)
		must := name != "fine"
		if must && (st != http.StatusForbidden || errCode(body) != "password-change-required") {
			t.Errorf("%s: credential request answered %d %v, want 403 password-change-required", name, st, body)
		}
		if !must && errCode(body) == "password-change-required" {
			t.Errorf("%s: refused a credential: %v", name, body)
		}
		ws := dialWithCookies(t, srv, c)
		ws.sendRaw(`{"v":1,"type":"join","id":"j","room":"staff","name":"` + name + `"}`)
		if got := isWelcome(ws.readRaw()); got == must {
			t.Errorf("%s: entered the accounts room = %v", name, got)
		}
	}
}

// TestHardening17HeadersAndDebugListener: the CSP connects only to this
// origin, the session cookie carries the __Host- prefix, and the debug
// listener refuses a Host that is not loopback (DNS rebinding).
func TestHardening17HeadersAndDebugListener(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	addUser(t, srv, "ann", store.RoleUser, time.Now(), false)
	c := newAPIClient(t, srv)
	_, _, h := c.do("GET", "/", nil, false)
	csp := h.Get("Content-Security-Policy")
	for _, d := range strings.Split(csp, ";") {
		if f := strings.Fields(d); len(f) > 0 && f[0] == "connect-src" && (len(f) != 2 || f[1] != "'self'") {
			t.Errorf("CSP %q: want connect-src 'self' only", d)
		}
	}
	_, _, h = c.do("POST", "/api/login", map[string]string{"username": "ann", "password": testPassword}, false)
	cookie := h.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, "__Host-") || !strings.Contains(cookie, "Path=/") || strings.Contains(strings.ToLower(cookie), "domain=") {
		t.Errorf("session cookie %q: want a __Host- cookie with Path=/ and no Domain", cookie)
	}

	dbg := startDebugServer(t)
	for host, want := range map[string]int{"127.0.0.1": 200, "localhost:1": 200, "[::1]:6060": 200,
		"rebind.attacker.example": 403, "rebind.attacker.example:6060": 403, "10.0.0.1": 403} {
		req, _ := http.NewRequest("GET", "http://"+dbg+"/metrics", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("debug listener with Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestHardening18FileDownloadType: a downloaded file is an attachment of a
// fixed type, whatever its sender declared.
func TestHardening18FileDownloadType(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{}, "a")
	w := dial(t, srv).join("a", "Alice")
	st, data := fileRequest(t, srv, "POST", "/api/files", w.UploadToken, []byte("<html><script>alert(1)</script></html>"))
	if st != http.StatusCreated {
		t.Fatalf("upload: %d %s", st, data)
	}
	id := strings.Split(string(data), `"`)[3]
	req, _ := http.NewRequest("GET", srv.URL()+"/api/files/"+id, nil)
	req.Header.Set("X-Conclave-Upload", w.UploadToken)
	resp, err := newAPIClient(t, srv).hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("download: %d, Content-Type %q, Content-Disposition %q, nosniff %q", resp.StatusCode,
			resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"), resp.Header.Get("X-Content-Type-Options"))
	}
}

// dialWithCookies opens a signaling connection carrying c's session cookie.
func dialWithCookies(t *testing.T, srv *testserver.Server, c *apiClient) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "wss" + strings.TrimPrefix(srv.URL(), "https") + "/ws"
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: http.Header{"Origin": {srv.URL()}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &wsClient{t: t, c: ws}
}

// startDebugServer runs a node with a debug listener and returns its
// address.
func startDebugServer(t *testing.T) string {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) { c.DebugListen = "127.0.0.1:0" }})
	return srv.DebugAddr().String()
}

// loginFrom signs in from a chosen loopback source address and returns the
// status and error code.
func loginFrom(t *testing.T, srv *testserver.Server, source, user, password string) (int, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	data, _ := json.Marshal(map[string]string{"username": user, "password": password})
	resp, err := hc.Post(srv.URL()+"/api/login", "application/json", bytes.NewReader(data))
	if err != nil {
		t.Errorf("login from %s: %v", source, err)
		return 0, ""
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, errCode(body)
}

// TestHardening01ArgonFlood: sign-ins with made-up usernames cannot make
// the server hash without bound. Many at once from one address are mostly
// refused before any hashing; from many addresses they wait for the
// memory budget, which is never exceeded; a quarantined address costs no
// hash at all, neither with passwords nor with PINs.
func TestHardening01ArgonFlood(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := openAccessServer(t, clk)
	const n = 40
	var wg sync.WaitGroup
	codes := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, code := loginFrom(t, srv, "127.0.0.51", "user-"+strconv.Itoa(i), "Whatever-Pass-1")
			codes <- strconv.Itoa(st) + " " + code
		}()
	}
	wg.Wait()
	close(codes)
	hashed := 0
	for c := range codes {
		switch c {
		case "401 bad-credentials":
			hashed++
		case "429 busy", "429 address-blocked":
		default:
			t.Errorf("answer %q", c)
		}
	}
	// At most DefaultHashPerSource at once from one address, and at most
	// 20 failures before the address is quarantined.
	if max := 20 + auth.DefaultHashPerSource; hashed > max {
		t.Errorf("%d of %d simultaneous sign-ins from one address were hashed, want at most %d", hashed, n, max)
	}
	budget := srv.HashStats()
	if budget.PeakKiB > budget.TotalKiB {
		t.Errorf("hashing memory peaked at %d KiB, over the budget of %d KiB", budget.PeakKiB, budget.TotalKiB)
	}

	// Quarantine another address cheaply (unknown aliases without PIN),
	// then loop PIN joins and sign-ins from it: no hashing at all.
	for i := 0; i < 21; i++ {
		attempt(t, srv, "127.0.0.52", "guess-"+strconv.Itoa(i), "")
	}
	before := srv.HashStats().Granted
	for i := 0; i < 20; i++ {
		if raw := attempt(t, srv, "127.0.0.52", "vault", hostPIN); isWelcome(raw) {
			t.Fatal("a quarantined address entered")
		}
	}
	if st, code := loginFrom(t, srv, "127.0.0.52", "user-x", "Whatever-Pass-1"); st != http.StatusTooManyRequests || code != "address-blocked" {
		t.Errorf("sign-in from a quarantined address: %d %s", st, code)
	}
	if got := srv.HashStats().Granted - before; got != 0 {
		t.Errorf("a quarantined address made the server hash %d times", got)
	}
}

// TestHardening14PasswordSpraying: one password tried once on each of
// many usernames (no username reaches its own lockout) is stopped after
// 20 failures from the address; other addresses still sign in.
func TestHardening14PasswordSpraying(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := openAccessServer(t, clk)
	for i := 0; i < 3; i++ {
		addUser(t, srv, "staff"+strconv.Itoa(i), store.RoleUser, clk.Now(), false)
	}
	for i := 0; i < 21; i++ {
		if st, code := loginFrom(t, srv, "127.0.0.61", "name"+strconv.Itoa(i), "Summer-2026-Pass!"); st != http.StatusUnauthorized {
			t.Fatalf("spray %d: %d %s", i+1, st, code)
		}
		clk.Advance(10 * time.Second)
	}
	// Even the right password of a real account is refused from there now.
	if st, code := loginFrom(t, srv, "127.0.0.61", "staff1", testPassword); st != http.StatusTooManyRequests || code != "address-blocked" {
		t.Fatalf("after 21 failures from one address: %d %s, want 429 address-blocked", st, code)
	}
	if st, code := loginFrom(t, srv, "127.0.0.62", "staff1", testPassword); st != http.StatusOK {
		t.Fatalf("another address: %d %s", st, code)
	}
	if got := alarmsOf(srv, guard.AddressQuarantined); len(got) != 1 || got[0].Subject != "127.0.0.61" {
		t.Fatalf("quarantine alarms %+v", got)
	}
	clk.Advance(10*time.Minute + time.Second)
	if st, code := loginFrom(t, srv, "127.0.0.61", "staff1", testPassword); st != http.StatusOK {
		t.Fatalf("after the quarantine: %d %s", st, code)
	}
}

// TestHardening05AuditFlood: repeated refusals are written once with a
// count, not once each: 200 attempts from a quarantined address add two
// records to the audit log, which still says how many there were.
func TestHardening05AuditFlood(t *testing.T) {
	clk := fakeclock.New(time.Now())
	// No connection cap: the test keeps its 221 connections open.
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk},
		Config: func(c *config.Config) { c.MaxConnsPerAddress = -1 }}, "lounge")
	for i := 0; i < 21; i++ {
		attempt(t, srv, "127.0.0.71", "guess-"+strconv.Itoa(i), "")
	}
	records := func() int {
		all, err := srv.AuditEvents(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return len(all)
	}
	before := records()
	for i := 0; i < 200; i++ {
		attempt(t, srv, "127.0.0.71", "lounge", "")
	}
	if got := records() - before; got > 1 {
		t.Errorf("200 refused attempts wrote %d audit records during the flood, want at most 1", got)
	}
	clk.Advance(time.Minute)
	if err := srv.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := records() - before; got > 2 {
		t.Errorf("200 refused attempts wrote %d audit records, want at most 2", got)
	}
	events, _ := srv.AuditEvents(context.Background(), "room-access-refused")
	last := events[len(events)-1]
	if last.Details["repeated"] != "199" || last.Source != "127.0.0.71" {
		t.Errorf("summary record %+v, want repeated=199 from 127.0.0.71", last)
	}
}

// TestHardening08BlockByAlias: 21 wrong PINs block a room for PINs only:
// its owner and hosts signed in with their accounts still enter, and
// wrong PINs do not count against a room that takes no PIN.
func TestHardening08BlockByAlias(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := openAccessServer(t, clk)
	ctx := context.Background()
	owner := addUser(t, srv, "olga", store.RoleUser, clk.Now(), false)
	host := addUser(t, srv, "hal", store.RoleUser, clk.Now(), false)
	member := addUser(t, srv, "mia", store.RoleUser, clk.Now(), false)
	hostHash, _ := auth.HashPIN(hostPIN)
	board, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN,
		HostPINHash: hostHash, OwnerID: owner.ID})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store().AddRoomMember(ctx, board.ID, host.ID, store.MemberHost)
	staff, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "staff", DisplayName: "Staff", Access: store.AccessAccounts})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store().AddRoomMember(ctx, staff.ID, member.ID, store.MemberMember)
	for i := 0; i < 21; i++ {
		attempt(t, srv, "127.0.0."+strconv.Itoa(80+i%5), "board", "000000")
		attempt(t, srv, "127.0.0."+strconv.Itoa(85+i%5), "staff", "000000")
	}
	if got := alarmsOf(srv, guard.RoomBlocked); len(got) != 1 || got[0].Subject != "board" {
		t.Fatalf("room-blocked alarms %+v, want board only (staff takes no PIN)", got)
	}
	if raw := attempt(t, srv, "127.0.0.90", "board", hostPIN); isWelcome(raw) {
		t.Fatal("the host PIN entered a blocked room")
	}
	for _, u := range []string{"olga", "hal"} {
		ws := dialWithCookies(t, srv, signIn(t, srv, u))
		ws.sendRaw(`{"v":1,"type":"join","id":"j","room":"board","name":"` + u + `"}`)
		if raw := ws.readRaw(); !isWelcome(raw) {
			t.Errorf("%s (owner or host by account) was refused a blocked room: %s", u, raw)
		}
	}
	ws := dialWithCookies(t, srv, signIn(t, srv, "mia"))
	ws.sendRaw(`{"v":1,"type":"join","id":"j","room":"staff","name":"mia"}`)
	if raw := ws.readRaw(); !isWelcome(raw) {
		t.Errorf("a member was refused an accounts room after wrong PINs: %s", raw)
	}
}

// TestHardening10TimingUnknownRoom: an unknown alias costs the server the
// same work as a wrong PIN on a room that exists (the same PIN hashing,
// the same count against the address and the same audit record), so its
// answer comes neither faster nor slower.
func TestHardening10TimingUnknownRoom(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := openAccessServer(t, clk)
	work := func(source, room string) (hashes uint64, audits int) {
		h0, a0 := srv.HashStats().Granted, auditCount(t, srv, "")
		raw := attempt(t, srv, source, room, "999999")
		if isWelcome(raw) {
			t.Fatalf("%s entered", room)
		}
		return srv.HashStats().Granted - h0, auditCount(t, srv, "") - a0
	}
	hu, au := work("127.0.0.95", "no-such-room")
	hw, aw := work("127.0.0.96", "vault")
	if hu != hw || au != aw {
		t.Errorf("unknown alias: %d hashings and %d audit records; wrong PIN: %d and %d", hu, au, hw, aw)
	}
	if au != 1 || hu != 1 {
		t.Errorf("a refusal did %d hashings and wrote %d audit records, want 1 and 1", hu, au)
	}
}

// TestHardening02ConnectionFloods: one address cannot hold more than its
// share of connections; a signaling connection that does not join is
// closed after the join deadline; a request body that stalls is cut off.
func TestHardening02ConnectionFloods(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk, BodyTimeout: 300 * time.Millisecond},
		Config: func(c *config.Config) { c.MaxConnsPerAddress = 8 }}, "lounge")
	addr := strings.TrimPrefix(srv.URL(), "https://")
	dialTLS := func(source string) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	}
	var held []*tls.Conn
	for i := 0; i < 8; i++ {
		c, err := dialTLS("127.0.0.111")
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	if c, err := dialTLS("127.0.0.111"); err == nil {
		c.Close()
		t.Fatal("a 9th connection from one address was served")
	}
	if c, err := dialTLS("127.0.0.112"); err != nil {
		t.Fatalf("another address was refused: %v", err)
	} else {
		c.Close()
	}
	for _, c := range held {
		c.Close()
	}

	// A signaling connection that never joins is closed at the deadline;
	// one that joined stays.
	armed := make(chan time.Duration, 64)
	clk.NotifyArmed(armed)
	idle := dialFrom(t, srv, "127.0.0.113")
	joined := dialFrom(t, srv, "127.0.0.114")
	for deadlines := 0; deadlines < 2; {
		select {
		case d := <-armed:
			if d == 10*time.Second {
				deadlines++
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the join deadlines were not armed")
		}
	}
	clk.NotifyArmed(nil)
	joined.join("lounge", "Joe")
	// The welcome is queued before the reading loop ends the join
	// deadline; a ping answered after it proves the loop got that far.
	joined.sendRaw(`{"v":1,"type":"ping","id":"j"}`)
	if m := joined.next(signal.TypeRoomState, signal.TypeSpeaker); m.Type != signal.TypePong {
		t.Fatalf("joined connection: %s", m.Type)
	}
	clk.Advance(10 * time.Second)
	idle.expectClosed(websocket.StatusPolicyViolation)
	joined.sendRaw(`{"v":1,"type":"ping","id":"p"}`)
	if m := joined.next(signal.TypeRoomState, signal.TypeSpeaker); m.Type != signal.TypePong {
		t.Fatalf("joined connection: %s", m.Type)
	}

	// Slowloris on the API: headers, then a body that never comes.
	c, err := dialTLS("127.0.0.115")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user", addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a stalled body got %s", resp.Status)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server still waits for a body that stalled 5 s ago")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the stalled body was cut off after %v", d)
	}
}

// TestHardening06MuteRemembered (docs/hardening.md, finding 6): a guest a
// host muted comes back muted after leaving and joining again.
func TestHardening06MuteRemembered(t *testing.T) {
	srv := openAccessServer(t, fakeclock.New(time.Now()))
	host, hw := joinAs(t, srv, "127.0.0.121", "Hana", hostPIN)
	guest, gw := joinAs(t, srv, "127.0.0.122", "Gus", guestPIN)
	if hw.Type != signal.TypeWelcome || gw.Type != signal.TypeWelcome {
		t.Fatalf("joins: %s %s", hw.Type, gw.Type)
	}
	host.sendRaw(`{"v":1,"type":"mute","target":"` + gw.Self.ID + `"}`)
	if m := guest.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState, signal.TypeSpeaker); m.Type != signal.TypeMuted {
		t.Fatalf("guest got %s, want muted", m.Type)
	}
	guest.sendRaw(`{"v":1,"type":"leave"}`)
	_, again := joinAs(t, srv, "127.0.0.122", "Gus", guestPIN)
	if again.Type != signal.TypeWelcome || again.Self == nil || !again.Self.Muted {
		t.Fatalf("the muted guest came back: %+v, want welcome with muted", again.Self)
	}
}

// TestHardening04InMeetingFloods (docs/hardening.md, finding 4): a member
// cannot flood the others with chat or announcements: past its budget
// (1 MiB of chat at once, then 64 KiB a second; 4 announcements, then one
// every 5 s) it is told "rate-limited" and nothing more is relayed.
func TestHardening04InMeetingFloods(t *testing.T) {
	clk := fakeclock.New(time.Now()) // no time passes: no budget comes back
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk}}, "lounge")
	mallory, ann := dial(t, srv), dial(t, srv)
	mallory.join("lounge", "Mallory")
	ann.join("lounge", "Ann")
	payload := strings.Repeat("A", 60<<10)
	limited := 0
	for i := 0; i < 40; i++ { // 2.4 MiB
		mallory.sendRaw(`{"v":1,"type":"chat","id":"c` + strconv.Itoa(i) + `","payload":"` + payload + `"}`)
	}
	for i := 0; i < 10; i++ {
		mallory.sendRaw(`{"v":1,"type":"announce","id":"a` + strconv.Itoa(i) + `","payload":"QUJD"}`)
	}
	mallory.sendRaw(`{"v":1,"type":"ping","id":"end"}`)
	for {
		m := mallory.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState, signal.TypeSpeaker, signal.TypeAnnounce)
		if m.Type == signal.TypePong {
			break
		}
		if m.Type == signal.TypeError && m.Code == signal.CodeRateLimited {
			limited++
		}
	}
	ann.sendRaw(`{"v":1,"type":"ping","id":"end"}`)
	chats, announces := 0, 0
	for {
		m := ann.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState, signal.TypeSpeaker)
		if m.Type == signal.TypePong {
			break
		}
		switch m.Type {
		case signal.TypeChat:
			chats++
		case signal.TypeAnnounce:
			announces++
		}
	}
	if chats > 18 || announces > 4 {
		t.Errorf("Ann received %d chat messages of 60 KiB and %d announcements from a flood of 40 and 10; want at most 18 (1 MiB) and 4", chats, announces)
	}
	if limited < 40-18+10-4 {
		t.Errorf("Mallory was told rate-limited %d times", limited)
	}
}
