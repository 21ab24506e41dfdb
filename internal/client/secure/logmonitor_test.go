package secure

import (
	"context"
	"crypto/ecdsa"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/e2ee"
	"conclave/internal/testutil/fakeclock"
)

// memLog is an in-memory log the test owns, as a malicious server would:
// it signs checkpoints with the log key and appends what it likes.
type memLog struct {
	key     *ecdsa.PrivateKey
	mu      sync.Mutex
	records [][]byte
	hashes  []tlog.Hash
}

func (l *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.hashes[x]
	}
	return out, nil
}

func (l *memLog) add(t *testing.T, rec []byte) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	hs, err := tlog.StoredHashes(int64(len(l.records)), rec, l)
	if err != nil {
		t.Fatal(err)
	}
	l.records = append(l.records, rec)
	l.hashes = append(l.hashes, hs...)
}

func (l *memLog) Prove(ctx context.Context, from, to int64, records []tlog.Hash) (LogProof, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := int64(len(l.records))
	var p LogProof
	if to == 0 || to > n {
		s, _ := e2ee.NewLogSigner(l.key)
		h, _ := tlog.TreeHash(n, l)
		p.Checkpoint, _ = e2ee.SignCheckpoint(s, n, h)
		to = n
	}
	p.Size = to
	if from > 0 && from < to {
		p.Consistency, _ = tlog.ProveTree(to, from, l)
	}
	return p, nil
}

func (l *memLog) Entries(ctx context.Context, start, size int64) ([]LogEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LogEntry
	for i := start; i < size && i < int64(len(l.records)); i++ {
		p, _ := tlog.ProveRecord(size, i, l)
		out = append(out, LogEntry{Record: l.records[i], Proof: p})
	}
	return out, nil
}

// logWorld is an organisation: its CA and log keys and a log.
type logWorld struct {
	ca   *ecdsa.PrivateKey
	log  *memLog
	vkey string
}

func newLogWorld(t *testing.T) *logWorld {
	t.Helper()
	ca, _ := e2ee.GenerateDeviceKey()
	lk, _ := e2ee.GenerateDeviceKey()
	vkey, err := e2ee.LogVerifierKey(&lk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &logWorld{ca: ca, log: &memLog{key: lk}, vkey: vkey}
}

// certify appends a credential of a new device of user, valid from
// notBefore for 7 days, and returns it with the device key.
func (w *logWorld) certify(t *testing.T, user string, notBefore time.Time) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	dev, _ := e2ee.GenerateDeviceKey()
	cred, err := e2ee.IssueCredential(w.ca, e2ee.CredentialFields{OrgID: "acme", UserID: user, Account: user, DisplayName: user,
		DevicePublicKey: &dev.PublicKey, NotBefore: notBefore, NotAfter: notBefore.Add(7 * 24 * time.Hour), Serial: 1})
	if err != nil {
		t.Fatal(err)
	}
	w.log.add(t, cred)
	return cred, dev
}

func (w *logWorld) monitor(t *testing.T, clk *fakeclock.Clock, user string, dev *ecdsa.PrivateKey) *LogMonitor {
	t.Helper()
	m, err := NewLogMonitor(LogMonitorConfig{API: w.log, VerifierKey: w.vkey, OrgKey: &w.ca.PublicKey, OrgID: "acme",
		UserID: user, Device: &dev.PublicKey, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBackdatedCredentialIsNew: the server mints a credential for a device
// of its own with a validity that starts three days ago, so that
// participants would not flag it as a device certified less than a day
// ago. A device is as new as its place in the log says (no older than the
// records before it) and, for a client that watched the log, no older than
// the last time it saw the log without it (review of issue 11).
func TestBackdatedCredentialIsNew(t *testing.T) {
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clk := fakeclock.New(start)
	w := newLogWorld(t)
	_, bobDev := w.certify(t, "bob", start.Add(-30*24*time.Hour))
	w.certify(t, "carol", start.Add(-2*time.Hour)) // an honest record, two hours old
	rogue1, _ := w.certify(t, "ann", start.Add(-72*time.Hour))

	// A client reading the log for the first time: the rogue credential
	// comes after a record of two hours ago.
	first := w.monitor(t, clk, "bob", bobDev)
	if err := first.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if age := clk.Now().Sub(first.Status(rogue1).FirstCertified); age >= NewDeviceAge {
		t.Errorf("a backdated credential logged after a record of 2 h ago counts as first certified %v ago", age)
	}

	// A quiet log: a client watching it sees a credential dated three days
	// ago appear now.
	clk.Advance(48 * time.Hour)
	if err := first.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	rogue2, _ := w.certify(t, "ann", clk.Now().Add(-72*time.Hour))
	if err := first.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := first.Status(rogue2)
	if !st.Logged {
		t.Fatal("the rogue credential is not logged")
	}
	if age := clk.Now().Sub(st.FirstCertified); age >= NewDeviceAge {
		t.Errorf("a backdated credential that appeared in a watched log counts as first certified %v ago", age)
	}
	// An honest old device stays old.
	if age := clk.Now().Sub(first.Status(w.log.records[0]).FirstCertified); age < NewDeviceAge {
		t.Errorf("bob's month-old device counts as new (%v)", age)
	}
}

// certifyAs appends a credential of a new device for user (account, shown
// name) and returns the credential and the device key.
func (w *logWorld) certifyAs(t *testing.T, user, account, display string, notBefore time.Time) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	dev, _ := e2ee.GenerateDeviceKey()
	cred, err := e2ee.IssueCredential(w.ca, e2ee.CredentialFields{OrgID: "acme", UserID: user, Account: account, DisplayName: display,
		DevicePublicKey: &dev.PublicKey, NotBefore: notBefore, NotAfter: notBefore.Add(7 * 24 * time.Hour), Serial: 1})
	if err != nil {
		t.Fatal(err)
	}
	w.log.add(t, cred)
	return cred, dev
}

// TestLookalikeNamesNative: the names a certified participant sees flagged
// (docs/e2ee.md, section 15; review of issue 11). A guest who adds a title
// to a certified participant's name ("Alice Martin (CEO)"), a guest who
// writes an account out as the badge does ("Al (@bob)"), and a second
// account the server made with Alice's display name are all flagged.
func TestLookalikeNamesNative(t *testing.T) {
	r := newRelay(t)
	w := newLogWorld(t)
	old := r.clock.Now().Add(-48 * time.Hour)
	aliceCred, aliceDev := w.certifyAs(t, "1", "alice", "Alice Martin", old)
	bobCred, bobDev := w.certifyAs(t, "2", "bob", "Bob Stone", old)
	twinCred, twinDev := w.certifyAs(t, "3", "alice.martin", "Alice Martin", old)
	member := func(id, name string, cred []byte, user string, dev *ecdsa.PrivateKey, n *notices) *Session {
		cfg := Config{Name: name, OrgKey: &w.ca.PublicKey, OrgName: "Acme"}
		if n != nil {
			cfg.OnNotice = n.add
		}
		if cred != nil {
			cfg.Credential, cfg.UserID, cfg.Device = cred, user, dev
		}
		cfg.Log = w.monitor(t, r.clock, user, dev)
		if err := cfg.Log.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		return r.join(id, cfg)
	}
	var nb notices
	member("bob", "Bob Stone", bobCred, "2", bobDev, &nb)
	member("alice", "Alice Martin", aliceCred, "1", aliceDev, nil)
	member("twin", "Alice Martin", twinCred, "3", twinDev, nil)
	guestDev, _ := e2ee.GenerateDeviceKey()
	member("ceo", "Alice Martin (CEO)", nil, "", guestDev, nil)
	member("al", "Al (@bob)", nil, "", guestDev, nil)
	r.pump()
	warned := func(id, like string) bool {
		for _, x := range nb.warnings() {
			if strings.Contains(x, "participant "+id+" ") && strings.Contains(x, "LOOKS LIKE "+like) {
				return true
			}
		}
		return false
	}
	// Two certified accounts with one name: Bob cannot tell which is the
	// Alice he knows, so both are flagged, each naming the other account.
	for _, c := range [][2]string{{"ceo", "Alice Martin (@"}, {"al", "Bob Stone (@bob)"}, {"twin", "Alice Martin (@alice)"},
		{"alice", "Alice Martin (@alice.martin)"}} {
		if !warned(c[0], c[1]) {
			t.Errorf("Bob was not warned that %s looks like %s: %q", c[0], c[1], nb.warnings())
		}
	}
	if warned("bob", "") || len(nb.warnings()) != 4 {
		t.Errorf("want exactly the four warnings: %q", nb.warnings())
	}
}
