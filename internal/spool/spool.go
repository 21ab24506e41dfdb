// Package spool keeps what a conference node must deliver to the
// management node — its audit entries — on its own disk until the
// management node has taken them, so that nothing is lost while the
// management node is down or unreachable.
//
// A node appends each entry to a file (synced before Append returns) and
// a shipper publishes the entries in order on the bus's spool stream
// (JetStream, deduplicated by the entry's number); once the stream has
// acknowledged an entry, the spool forgets it. The management node takes
// the entries from the stream (Consume) and writes them into its own
// audit log with their original time and the node's name.
package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"conclave/internal/audit"
)

// Entry is one item delivered by a node.
type Entry struct {
	// Seq numbers the node's entries, from 1.
	Seq uint64 `json:"seq"`
	// Audit is an audit event of the node.
	Audit *Event `json:"audit,omitempty"`
}

// Event is an audit.Event on the wire.
type Event struct {
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor,omitempty"`
	Source  string            `json:"source,omitempty"`
	Action  string            `json:"action"`
	Target  string            `json:"target,omitempty"`
	Outcome string            `json:"outcome,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// Files of the spool, in its directory.
const (
	logFile   = "spool.jsonl"
	ackedFile = "spool.acked"
)

// maxEntry bounds one entry on disk and on the wire.
const maxEntry = 64 << 10

// Spool is a node's queue of entries not yet delivered.
type Spool struct {
	dir  string
	now  func() time.Time
	wake chan struct{}

	mu      sync.Mutex
	f       *os.File
	pending []Entry // appended, not yet acknowledged, in order
	next    uint64
	acked   uint64
}

// Open opens (or creates) the spool in dir, keeping what an earlier run
// left undelivered.
func Open(dir string, now func() time.Time) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, now: now, wake: make(chan struct{}, 1), next: 1}
	if b, err := os.ReadFile(filepath.Join(dir, ackedFile)); err == nil {
		n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("spool: %s is damaged: %w", ackedFile, err)
		}
		s.acked = n
		s.next = n + 1
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, logFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(f)
	var valid int64
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			// A line without its newline was cut by a crash while being
			// written: it was never acknowledged to its writer.
			break
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		var e Entry
		if json.Unmarshal(line, &e) != nil {
			break
		}
		valid += int64(len(line))
		if e.Seq > s.acked {
			s.pending = append(s.pending, e)
		}
		s.next = max(s.next, e.Seq+1)
	}
	if err := f.Truncate(valid); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(valid, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	return s, nil
}

// Record implements audit.Recorder: the event is on disk when it
// returns.
func (s *Spool) Record(_ context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	ev := &Event{Time: e.Time.UTC(), Actor: e.Actor, Source: e.Source, Action: e.Action, Target: e.Target,
		Outcome: e.Outcome, Details: e.Details}
	return s.append(Entry{Audit: ev})
}

func (s *Spool) append(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("spool: closed")
	}
	e.Seq = s.next
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if len(data) > maxEntry {
		return fmt.Errorf("spool: entry of %d bytes is too large", len(data))
	}
	data = append(data, '\n')
	if _, err := s.f.Write(data); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.next++
	s.pending = append(s.pending, e)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pending returns how many entries wait for delivery.
func (s *Spool) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// peek returns the oldest undelivered entry.
func (s *Spool) peek() (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return Entry{}, false
	}
	return s.pending[0], true
}

// ack forgets the delivered entry seq (the oldest), and empties the file
// once nothing is pending.
func (s *Spool) ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 || s.pending[0].Seq != seq {
		return nil
	}
	s.pending = s.pending[1:]
	s.acked = seq
	if err := writeAtomic(filepath.Join(s.dir, ackedFile), []byte(strconv.FormatUint(seq, 10)+"\n")); err != nil {
		return err
	}
	if len(s.pending) == 0 && s.f != nil {
		if err := s.f.Truncate(0); err != nil {
			return err
		}
		if _, err := s.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file; entries not delivered stay on disk for the next
// run.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
