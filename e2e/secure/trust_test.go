package secure

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/ra"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/testutil/wait"
)

// The server as an attacker on identities (issue 11): it mints a
// credential in a user's name, shows participants different logs, and an
// administrator revokes a device during a meeting.

// noticed reports whether m got a notice of kind whose text or
// participant name contains sub.
func (m *member) noticed(kind secure.NoticeKind, sub string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.notices {
		if n.Kind == kind && (strings.Contains(n.Text, sub) || strings.Contains(n.Participant.Name, sub) || strings.Contains(n.Participant.CertifiedName, sub)) {
			return true
		}
	}
	return false
}

// TestRogueCredentialNoticed: while Ann is in a meeting with her certified
// device, the server certifies a device it controls in Ann's name. Ann's
// client reports the new device within a minute (here: its next log
// refresh); when the rogue device joins the meeting, Bob sees it certified
// as Ann but flagged as a new device.
func TestRogueCredentialNoticed(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "rogue")
	orgKey, name := srv.org(t)
	ann := srv.issue(t, "ann")
	bob := srv.issue(t, "bob")
	a := join(t, srv, "rogue", "Ann", joinOpts{id: ann, orgKey: orgKey, orgName: name})
	b := join(t, srv, "rogue", "Bob", joinOpts{id: bob, orgKey: orgKey, orgName: name})
	waitVerified(t, a, b)

	u, err := srv.Store().UserByName(context.Background(), "ann")
	if err != nil {
		t.Fatal(err)
	}
	rogue, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&rogue.PublicKey)
	minted := time.Now()
	cred, _, err := srv.Authority().Certify(context.Background(), u, pub)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := e2ee.Fingerprint(&rogue.PublicKey)
	wait.For(t, "Ann's client to report the new device", time.Minute, func() bool { return a.noticed(secure.NewDevice, fp) })
	t.Logf("Ann's client reported the rogue device %v after it was certified", time.Since(minted).Round(10*time.Millisecond))
	if b.noticed(secure.NewDevice, fp) {
		t.Error("Bob was told of a device of Ann's account")
	}

	m := join(t, srv, "rogue", "Ann", joinOpts{id: identity{device: rogue, credential: cred, userID: ra.UserID(u)}, orgKey: orgKey, orgName: name})
	wait.For(t, "Bob to list the rogue device", 15*time.Second, func() bool {
		_, ok := b.sec.Participant(m.Self().ID)
		return ok
	})
	p, _ := b.sec.Participant(m.Self().ID)
	if !p.Certified || !p.NewDevice || p.Account != "ann" {
		t.Errorf("Bob sees the rogue device as %+v, want certified as ann and flagged new", p)
	}
	if !b.warned("NEW DEVICE") {
		t.Errorf("Bob was not warned: %q", b.warnings())
	}
}

// TestRevocationNative: an administrator revokes Ann's device during a
// meeting. Within 10 s Bob lists it as revoked and rotates his key without
// it, and the server sends Ann's device away.
func TestRevocationNative(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "rev")
	orgKey, name := srv.org(t)
	ann, bob := srv.issue(t, "ann"), srv.issue(t, "bob")
	video := func() client.FrameSource { return &repeatSource{frame: tinyKeyFrame(), codec: client.CodecVP8} }
	a := join(t, srv, "rev", "Ann", joinOpts{id: ann, orgKey: orgKey, orgName: name, video: video()})
	b := join(t, srv, "rev", "Bob", joinOpts{id: bob, orgKey: orgKey, orgName: name, video: video()})
	waitVerified(t, a, b)
	waitDecrypted(t, a, b, 5)
	annID := a.Self().ID
	u, _ := srv.Store().UserByName(context.Background(), "ann")
	pub, _ := e2ee.MarshalPublicKey(&ann.device.PublicKey)
	revoked := time.Now()
	if err := srv.Authority().Revoke(context.Background(), u, pub, "lost laptop"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "Bob to show Ann's device revoked", 10*time.Second, func() bool { return b.noticed(secure.Revoked, "Ann") })
	t.Logf("Bob showed the revocation %v after it was logged", time.Since(revoked).Round(10*time.Millisecond))
	wait.For(t, "Bob to rotate without Ann", 10*time.Second, func() bool {
		for _, e := range b.keyEvents(secure.Switched) {
			if e.Key.Generation == 1 {
				return true
			}
		}
		return false
	})
	if _, listed := b.sec.Participant(annID); listed {
		t.Error("Bob still lists Ann's revoked device")
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not send the revoked device away")
	}
	var ended *client.EndedError
	if err := a.Err(); !errors.As(err, &ended) || ended.Reason != "revoked" {
		t.Errorf("Ann's session ended with %v, want revoked", err)
	}
	// No key of Bob's new generation ever went to Ann.
	for _, e := range a.keyEvents(secure.PeerKey) {
		if e.Key.Generation >= 1 {
			t.Errorf("Ann received Bob's key of generation %d after the revocation", e.Key.Generation)
		}
	}
}

// forkLog is a log API that shows one client a fork of the server's log:
// the real records up to the fork, then records of its own, with
// checkpoints signed by the log key (which the server holds).
type forkLog struct {
	key     *ecdsa.PrivateKey
	mu      sync.Mutex
	records [][]byte
	hashes  []tlog.Hash
}

func (f *forkLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = f.hashes[x]
	}
	return out, nil
}

func (f *forkLog) add(rec []byte) {
	hs, err := tlog.StoredHashes(int64(len(f.records)), rec, f)
	if err != nil {
		panic(err)
	}
	f.records = append(f.records, rec)
	f.hashes = append(f.hashes, hs...)
}

func (f *forkLog) Prove(ctx context.Context, from, to int64, records []tlog.Hash) (secure.LogProof, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int64(len(f.records))
	var p secure.LogProof
	if to == 0 || to > n {
		s, _ := e2ee.NewLogSigner(f.key)
		h, _ := tlog.TreeHash(n, f)
		p.Checkpoint, _ = e2ee.SignCheckpoint(s, n, h)
		to = n
	}
	p.Size = to
	if from > 0 && from < to {
		p.Consistency, _ = tlog.ProveTree(to, from, f)
	}
	return p, nil
}

func (f *forkLog) Entries(ctx context.Context, start, size int64) ([]secure.LogEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []secure.LogEntry
	for i := start; i < size && i < int64(len(f.records)); i++ {
		p, _ := tlog.ProveRecord(size, i, f)
		out = append(out, secure.LogEntry{Record: f.records[i], Proof: p})
	}
	return out, nil
}

func loadLogKey(t *testing.T, dataDir string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "e2ee", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

// TestSplitViewNoticed: the server shows Vic a fork of the log (the real
// records, then a credential of its own) and everyone else the real log,
// which gains another record. Both trees have the same size and different
// roots: when Vic and Ann exchange their commitments, each finds the other's
// checkpoint inconsistent with its own, reports a split view, and no
// meeting code is agreed between them.
func TestSplitViewNoticed(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "split")
	orgKey, name := srv.org(t)
	ann, vic := srv.issue(t, "ann"), srv.issue(t, "vic")
	fork := &forkLog{key: loadLogKey(t, srv.dataDir)}
	recs, err := srv.Store().LogRecords(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		fork.add(r)
	}
	// One more record on each side of the fork.
	ctx := context.Background()
	extra, _ := srv.Store().CreateUser(ctx, store.User{Username: "extra", DisplayName: "Extra", Role: store.RoleUser, Enabled: true})
	d1, _ := e2ee.GenerateDeviceKey()
	p1, _ := e2ee.MarshalPublicKey(&d1.PublicKey)
	if _, _, err := srv.Authority().Certify(ctx, extra, p1); err != nil {
		t.Fatal(err)
	}
	d2, _ := e2ee.GenerateDeviceKey()
	p2, _ := e2ee.MarshalPublicKey(&d2.PublicKey)
	other, _, err := srv.Authority().Certify(ctx, extra, p2) // logged for real too, but the fork shows only it
	if err != nil {
		t.Fatal(err)
	}
	fork.mu.Lock()
	fork.add(other)
	fork.mu.Unlock()

	a := join(t, srv, "split", "Ann", joinOpts{id: ann, orgKey: orgKey, orgName: name})
	v := join(t, srv, "split", "Vic", joinOpts{id: vic, orgKey: orgKey, orgName: name, logAPI: fork})
	wait.For(t, "Ann and Vic to report the split view", 20*time.Second, func() bool {
		return a.warned("DIFFERENT VERSIONS OF THE IDENTITY LOG") && v.warned("DIFFERENT VERSIONS OF THE IDENTITY LOG")
	})
	if !codesApart(a, v) {
		t.Errorf("Ann and Vic agree on a code %q under a split log", a.sec.MeetingCode())
	}
	t.Logf("Ann's code %q, Vic's %q; Ann's log %d records, Vic's %d", a.sec.MeetingCode(), v.sec.MeetingCode(), a.log.Checkpoint().Size, v.log.Checkpoint().Size)
}
