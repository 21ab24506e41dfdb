// Package logmirror keeps a conference node's verified copy of the E2EE
// transparency log (docs/e2ee.md, section 13; docs/cluster.md,
// "Conference nodes"), so that the node answers the log's requests while
// the management node, which keeps the log, is down.
//
// The copy follows the management node's log: it asks for the latest
// signed checkpoint and, when the tree grew, a consistency proof from the
// checkpoint it holds and the records it lacks. It adopts them only if
//   - the checkpoint's signature verifies with the log's verifier key (the
//     one the configuration carries, which browsers and native clients pin
//     from GET /api/e2ee/org),
//   - the new tree extends the one it holds (no smaller tree, no other
//     tree of the same size, a consistency proof that verifies), and
//   - the records, appended to the ones it holds, hash to the
//     checkpoint's root (recomputed with the same tree code as the
//     management node's, package logtree).
//
// Anything else is refused with an error log line and never served: the
// node goes on serving the last log it verified. The copy is kept on disk
// (the records and the signed checkpoint) and verified again when a node
// starts. Clients verify every answer themselves: the node is not trusted
// with the log, it only keeps it available.
package logmirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/client/secure"
	"conclave/internal/clock"
	"conclave/internal/e2ee"
	"conclave/internal/logtree"
)

// ErrRefused wraps what the upstream sent that the copy does not adopt: a
// checkpoint that does not verify, a log that does not extend the copy
// (forked or rewritten), records that do not make the signed tree.
var ErrRefused = errors.New("refused the management node's log")

// ErrUnreachable wraps a failure to ask the upstream.
var ErrUnreachable = errors.New("the management node's log cannot be read")

// ErrEmpty is returned while the copy has no checkpoint yet.
var ErrEmpty = errors.New("this node has no copy of the log yet")

// Mirror is a verified copy of the log. It implements web.LogSource.
type Mirror struct {
	dir  string
	log  *slog.Logger
	kick chan struct{} // a sync is wanted (Run)

	syncMu   sync.Mutex // one Sync at a time; guards diskSize, lastErr
	diskSize int64      // records written to disk
	lastErr  string

	mu      sync.Mutex
	tree    *logtree.Tree
	cp      e2ee.Checkpoint // Note is nil while empty
	vkey    string          // the key cp was verified with
	down    bool            // the last Sync could not read the upstream
	refused bool            // the last Sync refused what the upstream sent
}

// Open loads the copy kept in dir (created if missing), verified with
// vkey; without a key, or when the copy on disk does not verify, it
// starts empty and says why.
func Open(dir, vkey string, log *slog.Logger) (*Mirror, error) {
	m := &Mirror{dir: dir, log: log, tree: logtree.New(), kick: make(chan struct{}, 1)}
	if err := m.load(vkey); err != nil {
		return nil, err
	}
	return m, nil
}

// Ready reports whether the copy has a checkpoint to serve.
func (m *Mirror) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cp.Note != nil
}

// Size is the number of records of the copy.
func (m *Mirror) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tree.Size()
}

// Down reports whether the last Sync could not read the upstream (false
// before the first).
func (m *Mirror) Down() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

// Refused reports whether the last Sync refused the upstream's log (a
// checkpoint that does not verify, a forked or rewritten log, records
// that do not make the signed tree).
func (m *Mirror) Refused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused
}

// Checkpoint returns the signed checkpoint of the copy, exactly as the
// management node signed it.
func (m *Mirror) Checkpoint() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cp.Note == nil {
		return nil, ErrEmpty
	}
	return m.cp.Note, nil
}

// Prove answers POST /api/e2ee/log/prove from the copy.
func (m *Mirror) Prove(from, to int64, records []tlog.Hash) (logtree.Proof, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cp.Note == nil {
		return logtree.Proof{}, ErrEmpty
	}
	p, err := m.tree.Prove(from, to, records)
	if to == 0 {
		p.Checkpoint = m.cp.Note
	}
	return p, err
}

// Entries answers GET /api/e2ee/log/entries from the copy.
func (m *Mirror) Entries(start, size int64) ([]logtree.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cp.Note == nil {
		return nil, ErrEmpty
	}
	return m.tree.Entries(start, size)
}

// Sync brings the copy up to the upstream's latest checkpoint, verified
// with vkey. The error wraps ErrRefused when the upstream's log was not
// adopted, ErrUnreachable when it could not be read.
func (m *Mirror) Sync(ctx context.Context, up secure.LogAPI, vkey string) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	err := m.sync(ctx, up, vkey)
	if ctx.Err() != nil {
		return err // stopped: nothing to report
	}
	m.mu.Lock()
	m.down, m.refused = errors.Is(err, ErrUnreachable), errors.Is(err, ErrRefused)
	m.mu.Unlock()
	m.report(err)
	return err
}

// report logs a change of the outcome of Sync: each refusal reason once,
// not every few seconds.
func (m *Mirror) report(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == m.lastErr {
		return
	}
	m.lastErr = msg
	switch {
	case err == nil:
		m.log.Info("E2EE log: this node's copy follows the management node's log again", "size", m.Size())
	case errors.Is(err, ErrRefused):
		m.log.Error("E2EE log: the management node sent a log this node does not adopt; the node serves the last log it verified", "err", err, "size", m.Size())
	default:
		m.log.Warn("E2EE log: the management node's log cannot be read; the node serves its copy", "err", err, "size", m.Size())
	}
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

func (m *Mirror) sync(ctx context.Context, up secure.LogAPI, vkey string) error {
	if vkey == "" {
		return errors.New("the configuration carries no log key yet")
	}
	v, err := e2ee.LogVerifier(vkey)
	if err != nil {
		return refused("the configuration's log key: %v", err)
	}
	m.mu.Lock()
	if m.cp.Note != nil && m.vkey != vkey {
		if _, err := e2ee.OpenCheckpoint(m.cp.Note, v); err != nil {
			m.log.Warn("E2EE log: the log key changed; this node drops its copy of the old log", "size", m.tree.Size())
			m.tree, m.cp = logtree.New(), e2ee.Checkpoint{}
			m.diskSize = 0
		}
	}
	m.vkey = vkey
	mine := m.cp
	m.mu.Unlock()

	p, err := up.Prove(ctx, 0, 0, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	cp, err := e2ee.OpenCheckpoint(p.Checkpoint, v)
	switch {
	case err != nil:
		return refused("its checkpoint does not verify with the log key: %v", err)
	case p.Size != cp.Size:
		return refused("its proof is of a tree of %d records, its checkpoint of %d", p.Size, cp.Size)
	case cp.Size < mine.Size:
		return refused("its tree of %d records is smaller than this node's copy of %d: the log was rolled back or rewritten", cp.Size, mine.Size)
	case mine.Note != nil && cp.Size == mine.Size && bytes.Equal(cp.Note, mine.Note):
		return nil
	}
	if mine.Note != nil {
		var proof tlog.TreeProof
		if cp.Size > mine.Size && mine.Size > 0 {
			p, err := up.Prove(ctx, mine.Size, cp.Size, nil)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrUnreachable, err)
			}
			proof = p.Consistency
		}
		if err := e2ee.VerifyConsistency(mine, cp, proof); err != nil {
			return refused("its tree of %d records does not extend this node's copy of %d: the log was forked or rewritten (%v)", cp.Size, mine.Size, err)
		}
	}
	var recs [][]byte
	for start := mine.Size; start < cp.Size; {
		es, err := up.Entries(ctx, start, cp.Size)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		if len(es) == 0 || len(es) > logtree.MaxEntries || int64(len(es)) > cp.Size-start {
			return refused("it answered %d records from %d of a tree of %d", len(es), start, cp.Size)
		}
		for _, e := range es {
			if len(e.Record) == 0 || len(e.Record) > MaxRecord {
				return refused("record %d is %d bytes long", start, len(e.Record))
			}
			recs = append(recs, e.Record)
			start++
		}
	}
	m.mu.Lock()
	err = m.tree.Extend(recs, cp.Hash)
	if err == nil {
		m.cp = cp
	}
	m.mu.Unlock()
	if err != nil {
		return refused("its records %d-%d do not make the tree its checkpoint signs (%v)", mine.Size, cp.Size, err)
	}
	if err := m.save(cp); err != nil {
		// The copy in memory is verified and served; the disk catches up
		// at the next change.
		m.log.Error("E2EE log: cannot keep the copy on disk", "err", err)
	}
	return nil
}

// Run syncs the copy with the upstream at once, then every interval and
// whenever Kick is called, until stop is called. upstream returns the log
// API of the management node and the log's verifier key as the
// configuration has them now (ok false while the configuration names
// none). It returns at once.
func (m *Mirror) Run(clk clock.Clock, interval time.Duration, upstream func() (api secure.LogAPI, vkey string, ok bool)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-m.kick:
			}
			if api, vkey, ok := upstream(); ok {
				rctx, rcancel := context.WithTimeout(ctx, 5*interval)
				m.Sync(rctx, api, vkey)
				rcancel()
			}
		}
	}()
	m.Kick()
	stopTicks := clock.Every(clk, interval, m.Kick)
	return func() {
		stopTicks()
		cancel()
		<-done
	}
}

// Kick asks Run for a sync now (the configuration changed).
func (m *Mirror) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}
