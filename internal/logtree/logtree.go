// Package logtree holds the E2EE transparency log's tree in memory
// (docs/e2ee.md, section 13): the records, their tlog hashes, an index by
// record hash, and the inclusion and consistency proofs clients ask for.
// The management node's registration authority (package ra) appends to
// it what its store holds; a conference node's copy (package logmirror)
// extends it only with records that hash to a checkpoint it verified.
// Neither signs nor verifies here: the tree is plain data.
package logtree

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// MaxEntries bounds the records of one Entries answer.
const MaxEntries = 256

// ErrTreeSize is returned for a tree size the log does not have.
var ErrTreeSize = errors.New("the log has no tree of that size")

// ErrRootMismatch is returned by Extend when the records do not make the
// tree the caller expected.
var ErrRootMismatch = errors.New("the records do not hash to the expected tree")

// Tree is an append-only tlog tree. It is not safe for concurrent use:
// its owner holds the lock that also guards its checkpoint.
type Tree struct {
	records [][]byte
	hashes  []tlog.Hash
	index   map[tlog.Hash]int64 // record hash -> index of its first copy
}

// New returns an empty tree.
func New() *Tree { return &Tree{index: map[tlog.Hash]int64{}} }

// ReadHashes implements tlog.HashReader.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("log hash %d not stored", x)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// Size is the number of records.
func (t *Tree) Size() int64 { return int64(len(t.records)) }

// Record returns record i (not a copy: callers must not change it).
func (t *Tree) Record(i int64) []byte { return t.records[i] }

// Append adds a record and returns its index.
func (t *Tree) Append(rec []byte) (int64, error) {
	n := int64(len(t.records))
	hs, err := tlog.StoredHashes(n, rec, t)
	if err != nil {
		return 0, fmt.Errorf("hash E2EE log record %d: %w", n, err)
	}
	t.records = append(t.records, rec)
	t.hashes = append(t.hashes, hs...)
	h := tlog.RecordHash(rec)
	if _, ok := t.index[h]; !ok {
		t.index[h] = n
	}
	return n, nil
}

// Extend appends records only if the tree they make has root hash root:
// on any other outcome the tree is left as it was and the error says why
// (ErrRootMismatch when the records hash to another tree).
func (t *Tree) Extend(records [][]byte, root tlog.Hash) error {
	n := t.Size()
	for _, rec := range records {
		if _, err := t.Append(rec); err != nil {
			t.truncate(n)
			return err
		}
	}
	h, err := t.Root()
	if err == nil && h != root {
		err = ErrRootMismatch
	}
	if err != nil {
		t.truncate(n)
	}
	return err
}

// truncate drops the records from n on.
func (t *Tree) truncate(n int64) {
	for i := n; i < int64(len(t.records)); i++ {
		h := tlog.RecordHash(t.records[i])
		if t.index[h] == i {
			delete(t.index, h)
		}
	}
	clear(t.records[n:])
	t.records = t.records[:n]
	t.hashes = t.hashes[:tlog.StoredHashCount(n)]
}

// Root is the root hash of the whole tree.
func (t *Tree) Root() (tlog.Hash, error) { return tlog.TreeHash(t.Size(), t) }

// Inclusion is where a record is in a tree, with its proof; Index is -1
// when the tree does not hold it.
type Inclusion struct {
	Index int64
	Proof tlog.RecordProof
}

// Proof answers POST /api/e2ee/log/prove: the checkpoint of the latest
// tree when to is 0 (set by the tree's owner, who holds it), a
// consistency proof of the tree of size to (or the latest) with the tree
// of size from, and the inclusion of each record hash in that tree.
type Proof struct {
	Checkpoint  []byte // when to was 0
	Size        int64
	Consistency tlog.TreeProof
	Inclusion   []Inclusion
}

// Prove builds a Proof, without its checkpoint: to = 0 means the whole
// tree.
func (t *Tree) Prove(from, to int64, records []tlog.Hash) (Proof, error) {
	n := t.Size()
	var p Proof
	if to == 0 {
		to = n
	}
	if to < 0 || to > n || from < 0 || from > to {
		return p, ErrTreeSize
	}
	p.Size = to
	if from > 0 && from < to {
		tp, err := tlog.ProveTree(to, from, t)
		if err != nil {
			return p, err
		}
		p.Consistency = tp
	}
	for _, h := range records {
		i, ok := t.index[h]
		if !ok || i >= to {
			p.Inclusion = append(p.Inclusion, Inclusion{Index: -1})
			continue
		}
		rp, err := tlog.ProveRecord(to, i, t)
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

// Entries returns records start.. (at most MaxEntries) of the tree of
// size size, each with its inclusion proof in that tree.
func (t *Tree) Entries(start, size int64) ([]Entry, error) {
	if size < 0 || size > t.Size() || start < 0 || start > size {
		return nil, ErrTreeSize
	}
	end := min(size, start+MaxEntries)
	out := make([]Entry, 0, end-start)
	for i := start; i < end; i++ {
		rp, err := tlog.ProveRecord(size, i, t)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Record: t.records[i], Proof: rp})
	}
	return out, nil
}
