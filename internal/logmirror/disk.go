package logmirror

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"conclave/internal/e2ee"
	"conclave/internal/logtree"
)

// The copy on disk: the signed checkpoint, and the records, each as a
// 4-byte big-endian length and its bytes, in log order. Records are
// appended (and synced) before the checkpoint is replaced, so a node
// stopped in between finds records past its checkpoint, which it drops.
const (
	checkpointFile = "checkpoint"
	recordsFile    = "records"
)

// MaxRecord bounds a log record (a credential or a revocation is a few
// hundred bytes).
const MaxRecord = 64 << 10

// load reads the copy kept on disk, verifying it with vkey.
func (m *Mirror) load(vkey string) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return fmt.Errorf("create the E2EE log copy's directory: %w", err)
	}
	note, err := os.ReadFile(filepath.Join(m.dir, checkpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read the E2EE log copy: %w", err)
	}
	if vkey == "" {
		m.log.Warn("E2EE log: no log key in the configuration to verify this node's copy with; it starts empty")
		return nil
	}
	drop := func(why string, args ...any) error {
		m.log.Warn("E2EE log: this node's copy on disk is not usable; it starts empty and is fetched again", "why", fmt.Sprintf(why, args...))
		return nil
	}
	v, err := e2ee.LogVerifier(vkey)
	if err != nil {
		return drop("the configuration's log key: %v", err)
	}
	cp, err := e2ee.OpenCheckpoint(note, v)
	if err != nil {
		return drop("its checkpoint does not verify with the log key: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(m.dir, recordsFile))
	if err != nil {
		return drop("its records: %v", err)
	}
	recs, used, err := parseRecords(data, cp.Size)
	if err != nil {
		return drop("its records: %v", err)
	}
	tree := logtree.New()
	if err := tree.Extend(recs, cp.Hash); err != nil {
		return drop("its records do not make the tree of its checkpoint: %v", err)
	}
	if used < len(data) {
		if err := os.Truncate(filepath.Join(m.dir, recordsFile), int64(used)); err != nil {
			return fmt.Errorf("drop the records past the E2EE log copy's checkpoint: %w", err)
		}
	}
	m.tree, m.cp, m.vkey, m.diskSize = tree, cp, vkey, cp.Size
	return nil
}

// parseRecords reads n records from data and returns them with the
// number of bytes they took.
func parseRecords(data []byte, n int64) ([][]byte, int, error) {
	var recs [][]byte
	off := 0
	for int64(len(recs)) < n {
		if len(data)-off < 4 {
			return nil, 0, fmt.Errorf("%d records where the checkpoint has %d", len(recs), n)
		}
		l := binary.BigEndian.Uint32(data[off:])
		if l == 0 || l > MaxRecord || int(l) > len(data)-off-4 {
			return nil, 0, fmt.Errorf("record %d is damaged", len(recs))
		}
		recs = append(recs, data[off+4:off+4+int(l)])
		off += 4 + int(l)
	}
	return recs, off, nil
}

// save writes the records the disk lacks, then the checkpoint. The caller
// holds syncMu, under which only Sync changes the tree. After a failure
// the next save writes every record again.
func (m *Mirror) save(cp e2ee.Checkpoint) error {
	if err := m.saveRecords(cp.Size); err != nil {
		m.diskSize = 0
		return err
	}
	tmp := filepath.Join(m.dir, checkpointFile+".tmp")
	if err := os.WriteFile(tmp, cp.Note, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(m.dir, checkpointFile))
}

// saveRecords appends records diskSize..size to the records file.
func (m *Mirror) saveRecords(size int64) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if m.diskSize == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(filepath.Join(m.dir, recordsFile), flags, 0o600)
	if err != nil {
		return err
	}
	var buf []byte
	for i := m.diskSize; i < size; i++ {
		rec := m.tree.Record(i)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(rec)))
		buf = append(buf, rec...)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	m.diskSize = size
	return nil
}
