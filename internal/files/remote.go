package files

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Files of a meeting that spans conference nodes (docs/cluster.md,
// "Meeting files across nodes"). A blob stays on the node its sender
// uploaded it to; that node announces it to the others (Ref), which
// remember where it is (Learn) so that their members' downloads are
// fetched from it on demand (internal/cascade). The index is dropped
// with the meeting and expires with the blobs' lifetime.

// Errors of a file kept by another node.
var (
	// ErrUnreachable: the node that keeps the file cannot be reached
	// (it is down, or the link to it is).
	ErrUnreachable = errors.New("the node that keeps this file cannot be reached")
	// ErrBusy: the node that keeps the file serves as many transfers to
	// other nodes as it may; try again.
	ErrBusy = errors.New("the node that keeps this file is busy")
)

// MaxRemote bounds the files of other nodes a store remembers.
const MaxRemote = 1 << 16

// Ref names a stored blob: its meeting, its id and its size.
type Ref struct {
	Meeting string
	ID      string
	Size    int64
}

// Valid checks a Ref that came from another node.
func (r Ref) Valid() error {
	switch {
	case r.Meeting == "" || len(r.Meeting) > 128 || strings.ContainsRune(r.Meeting, '/'):
		return fmt.Errorf("file of a malformed meeting id (%d bytes)", len(r.Meeting))
	case !validID(r.ID):
		return errors.New("file id is not 32 hex digits")
	case r.Size < 0:
		return fmt.Errorf("file of %d bytes", r.Size)
	}
	return nil
}

// remoteBlob is where another node keeps a blob.
type remoteBlob struct {
	node    string
	size    int64
	learned time.Time
}

func remoteKey(meeting, id string) string { return meeting + "/" + id }

// OnStored registers f to be called with each blob stored (after Put or
// PutID succeeded), outside the store's lock.
func (s *Store) OnStored(f func(Ref)) {
	s.mu.Lock()
	s.onStored = append(s.onStored, f)
	s.mu.Unlock()
}

// List returns the blobs stored here (not those being uploaded).
func (s *Store) List() []Ref {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Ref, 0, len(s.blobs))
	for id, b := range s.blobs {
		if !b.pending {
			out = append(out, Ref{Meeting: b.meeting, ID: id, Size: b.size})
		}
	}
	return out
}

// Learn records that node keeps the blob r. A blob of the same meeting
// and id stored here wins (its uploader got the id first here); beyond
// MaxRemote entries the news is refused.
func (s *Store) Learn(node string, r Ref) error {
	if err := r.Valid(); err != nil {
		return err
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.blobs[r.ID]; ok && b.meeting == r.Meeting {
		return fmt.Errorf("%w here", ErrExists)
	}
	k := remoteKey(r.Meeting, r.ID)
	if _, ok := s.remote[k]; !ok && len(s.remote) >= MaxRemote {
		return fmt.Errorf("this node already knows of %d files on other nodes", MaxRemote)
	}
	s.remote[k] = remoteBlob{node: node, size: r.Size, learned: now}
	return nil
}

// Locate tells which node keeps blob id of meeting, and its size; false
// when no node announced it (or it expired, or its meeting ended).
func (s *Store) Locate(meeting, id string) (node string, size int64, ok bool) {
	s.Sweep()
	s.mu.Lock()
	defer s.mu.Unlock()
	rb, ok := s.remote[remoteKey(meeting, id)]
	return rb.node, rb.size, ok
}

// Remote reports how many blobs of other nodes the store remembers.
func (s *Store) Remote() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.remote)
}
