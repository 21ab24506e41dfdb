package ra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/clock"
	"conclave/internal/e2ee"
)

// memLog is the Authority's copy of the log: the records (kept in the
// store), their tlog hashes, and what clients ask about.
type memLog struct {
	records [][]byte
	hashes  []tlog.Hash
	index   map[tlog.Hash]int64 // record hash -> index of its first copy
	revoked map[string]bool     // revocationKey
}

func newMemLog() memLog {
	return memLog{index: map[tlog.Hash]int64{}, revoked: map[string]bool{}}
}

func revocationKey(userID string, devicePublicKey []byte) string {
	return userID + "\x00" + string(devicePublicKey)
}

// ReadHashes implements tlog.HashReader.
func (l *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(l.hashes)) {
			return nil, fmt.Errorf("log hash %d not stored", x)
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

// Sync reads the records appended to the store since the last call (by
// this process or another) and reports new revocations to OnRevoke.
func (a *Authority) Sync(ctx context.Context) error {
	var revs []*e2ee.Revocation
	a.mu.Lock()
	for {
		recs, err := a.store.LogRecords(ctx, int64(len(a.log.records)), 1024)
		if err != nil {
			a.mu.Unlock()
			return fmt.Errorf("read the E2EE log: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			n := int64(len(a.log.records))
			hs, err := tlog.StoredHashes(n, rec, &a.log)
			if err != nil {
				a.mu.Unlock()
				return fmt.Errorf("hash E2EE log record %d: %w", n, err)
			}
			a.log.records = append(a.log.records, rec)
			a.log.hashes = append(a.log.hashes, hs...)
			if _, ok := a.log.index[e2ee.RecordHash(rec)]; !ok {
				a.log.index[e2ee.RecordHash(rec)] = n
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
	for _, rec := range a.log.records {
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
	return int64(len(a.log.records))
}

// Checkpoint returns the signed checkpoint of the latest tree.
func (a *Authority) Checkpoint() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.checkpointLocked()
}

func (a *Authority) checkpointLocked() ([]byte, error) {
	n := int64(len(a.log.records))
	if a.checkpoint != nil && a.cpSize == n {
		return a.checkpoint, nil
	}
	h, err := tlog.TreeHash(n, &a.log)
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

// Inclusion is where a record is in a tree, with its proof; Index is -1
// when the tree does not hold it.
type Inclusion struct {
	Index int64
	Proof tlog.RecordProof
}

// Proof answers POST /api/e2ee/log/prove: the checkpoint of the latest
// tree when to is 0, a consistency proof of the tree of size to (or the
// latest) with the tree of size from, and the inclusion of each record
// hash in that tree.
type Proof struct {
	Checkpoint  []byte // when to was 0
	Size        int64
	Consistency tlog.TreeProof
	Inclusion   []Inclusion
}

// ErrTreeSize is returned for a tree size the log does not have.
var ErrTreeSize = errors.New("the log has no tree of that size")

// Prove builds a Proof.
func (a *Authority) Prove(from, to int64, records []tlog.Hash) (Proof, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := int64(len(a.log.records))
	var p Proof
	if to == 0 {
		cp, err := a.checkpointLocked()
		if err != nil {
			return p, err
		}
		p.Checkpoint, to = cp, n
	}
	if to < 0 || to > n || from < 0 || from > to {
		return p, ErrTreeSize
	}
	p.Size = to
	if from > 0 && from < to {
		tp, err := tlog.ProveTree(to, from, &a.log)
		if err != nil {
			return p, err
		}
		p.Consistency = tp
	}
	for _, h := range records {
		i, ok := a.log.index[h]
		if !ok || i >= to {
			p.Inclusion = append(p.Inclusion, Inclusion{Index: -1})
			continue
		}
		rp, err := tlog.ProveRecord(to, i, &a.log)
		if err != nil {
			return p, err
		}
		p.Inclusion = append(p.Inclusion, Inclusion{Index: i, Proof: rp})
	}
	return p, nil
}

// Entry is a record with its inclusion proof.
type Entry struct {
	Record []byte
	Proof  tlog.RecordProof
}

// MaxEntries bounds the records of one Entries answer.
const MaxEntries = 256

// Entries returns records start.. (at most MaxEntries) of the tree of
// size size, each with its inclusion proof in that tree.
func (a *Authority) Entries(start, size int64) ([]Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if size < 0 || size > int64(len(a.log.records)) || start < 0 || start > size {
		return nil, ErrTreeSize
	}
	end := min(size, start+MaxEntries)
	out := make([]Entry, 0, end-start)
	for i := start; i < end; i++ {
		rp, err := tlog.ProveRecord(size, i, &a.log)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Record: a.log.records[i], Proof: rp})
	}
	return out, nil
}
