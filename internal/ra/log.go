package ra

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/clock"
	"conclave/internal/e2ee"
	"conclave/internal/logtree"
)

// memLog is the Authority's copy of the log: the tree of the records
// (kept in the store) and the revocations clients ask about.
type memLog struct {
	tree    *logtree.Tree
	revoked map[string]bool // revocationKey
}

func newMemLog() memLog {
	return memLog{tree: logtree.New(), revoked: map[string]bool{}}
}

func revocationKey(userID string, devicePublicKey []byte) string {
	return userID + "\x00" + string(devicePublicKey)
}

// Sync reads the records appended to the store since the last call (by
// this process or another) and reports new revocations to OnRevoke.
func (a *Authority) Sync(ctx context.Context) error {
	var revs []*e2ee.Revocation
	a.mu.Lock()
	for {
		recs, err := a.store.LogRecords(ctx, a.log.tree.Size(), 1024)
		if err != nil {
			a.mu.Unlock()
			return fmt.Errorf("read the E2EE log: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			if _, err := a.log.tree.Append(rec); err != nil {
				a.mu.Unlock()
				return err
			}
			if e2ee.KindOf(rec) == e2ee.RecordRevocation {
				if r, err := e2ee.VerifyRevocation(&a.key.PublicKey, rec); err == nil {
					pub, _ := e2ee.MarshalPublicKey(r.DevicePublicKey)
					a.log.revoked[revocationKey(r.UserID, pub)] = true
					revs = append(revs, r)
				}
			}
		}
	}
	onRevoke := a.onRevoke
	a.mu.Unlock()
	if onRevoke != nil {
		for _, r := range revs {
			onRevoke(r)
		}
	}
	return nil
}

// Watch calls f with every revocation in the log now, and then with each
// one the log gains (from this process or another, such as the admin CLI,
// once Sync or Run reads it).
func (a *Authority) Watch(f func(*e2ee.Revocation)) {
	a.mu.Lock()
	a.onRevoke = f
	var revs []*e2ee.Revocation
	for i := range a.log.tree.Size() {
		rec := a.log.tree.Record(i)
		if e2ee.KindOf(rec) == e2ee.RecordRevocation {
			if r, err := e2ee.VerifyRevocation(&a.key.PublicKey, rec); err == nil {
				revs = append(revs, r)
			}
		}
	}
	a.mu.Unlock()
	for _, r := range revs {
		f(r)
	}
}

// Run syncs the log every interval until stop is called, so that
// revocations appended by the admin CLI take effect (Watch) while the
// server runs. It returns at once.
func (a *Authority) Run(ctx context.Context, interval time.Duration) (stop func()) {
	return clock.Every(a.clock, interval, func() { a.Sync(ctx) })
}

// Size returns the number of records in the log.
func (a *Authority) Size() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.tree.Size()
}

// Checkpoint returns the signed checkpoint of the latest tree.
func (a *Authority) Checkpoint() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.checkpointLocked()
}

func (a *Authority) checkpointLocked() ([]byte, error) {
	n := a.log.tree.Size()
	if a.checkpoint != nil && a.cpSize == n {
		return a.checkpoint, nil
	}
	h, err := a.log.tree.Root()
	if err != nil {
		return nil, err
	}
	cp, err := e2ee.SignCheckpoint(a.signer, n, h)
	if err != nil {
		return nil, err
	}
	a.checkpoint, a.cpSize = cp, n
	return cp, nil
}

// Inclusion is where a record is in a tree, with its proof (logtree).
type Inclusion = logtree.Inclusion

// Proof answers POST /api/e2ee/log/prove (logtree).
type Proof = logtree.Proof

// Entry is a record with its inclusion proof (logtree).
type Entry = logtree.Entry

// ErrTreeSize is returned for a tree size the log does not have.
var ErrTreeSize = logtree.ErrTreeSize

// MaxEntries bounds the records of one Entries answer.
const MaxEntries = logtree.MaxEntries

// Prove answers POST /api/e2ee/log/prove: the checkpoint of the latest
// tree when to is 0, a consistency proof of the tree of size to (or the
// latest) with the tree of size from, and the inclusion of each record
// hash in that tree.
func (a *Authority) Prove(from, to int64, records []tlog.Hash) (Proof, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var cp []byte
	if to == 0 {
		var err error
		if cp, err = a.checkpointLocked(); err != nil {
			return Proof{}, err
		}
	}
	p, err := a.log.tree.Prove(from, to, records)
	p.Checkpoint = cp
	return p, err
}

// Entries returns records start.. (at most MaxEntries) of the tree of
// size size, each with its inclusion proof in that tree.
func (a *Authority) Entries(start, size int64) ([]Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.tree.Entries(start, size)
}
