// Package files keeps the encrypted file blobs that meeting participants
// exchange. The server cannot read them (docs/e2ee.md, section 10): it
// stores opaque bytes under a random id, for the members of one meeting
// only, with a size limit, a total quota and an expiry.
package files

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"conclave/internal/clock"
)

// Errors returned by Store.
var (
	ErrExists      = errors.New("a file with this id exists")
	ErrTooLarge    = errors.New("the file is larger than the limit")
	ErrStorageFull = errors.New("the server has no room for this file")
	ErrNotFound    = errors.New("no such file in this meeting")
)

// Config sets the limits of a Store.
type Config struct {
	// MaxSize is the largest blob accepted (100 MiB).
	MaxSize int64
	// Quota bounds the bytes stored in all (10 GiB).
	Quota int64
	// TTL is how long a blob is kept at most (24 h); blobs also go when
	// their meeting ends.
	TTL time.Duration
	// Clock tells the time files expire by; nil means clock.System.
	Clock clock.Clock
}

type blob struct {
	meeting string
	size    int64
	created time.Time
	pending bool // being uploaded
}

// Store keeps blobs in one directory.
type Store struct {
	dir string
	cfg Config

	mu    sync.Mutex
	blobs map[string]blob
	used  int64 // bytes stored, plus bytes being written
}

// Open prepares dir. Blobs left from an earlier run are deleted: meetings
// do not survive a restart, so nobody could fetch them any more.
func Open(dir string, cfg Config) (*Store, error) {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 100 << 20
	}
	if cfg.Quota <= 0 {
		cfg.Quota = 10 << 30
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear file store: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create file store: %w", err)
	}
	return &Store{dir: dir, cfg: cfg, blobs: map[string]blob{}}, nil
}

// MaxSize is the largest blob accepted.
func (s *Store) MaxSize() int64 { return s.cfg.MaxSize }

// Put stores the blob read from r for meeting under a new random id and
// returns the id. A blob over MaxSize gives ErrTooLarge, a full quota or
// disk ErrStorageFull; in every failure nothing is left behind.
func (s *Store) Put(meeting string, r io.Reader, sizeHint int64) (string, error) {
	return s.PutID(meeting, newID(), r, sizeHint)
}

// PutID is Put under an id the client chose (32 hex digits): E2EE binds
// the file id into every encrypted chunk, so the client fixes it before
// encrypting. A malformed id gives ErrNotFound, a taken one ErrExists.
func (s *Store) PutID(meeting, id string, r io.Reader, sizeHint int64) (string, error) {
	if !validID(id) {
		return "", ErrNotFound
	}
	s.Sweep()
	reserve := sizeHint
	if reserve <= 0 || reserve > s.cfg.MaxSize {
		reserve = s.cfg.MaxSize
	}
	s.mu.Lock()
	if _, taken := s.blobs[id]; taken {
		s.mu.Unlock()
		return "", ErrExists
	}
	if s.used+reserve > s.cfg.Quota {
		s.mu.Unlock()
		return "", ErrStorageFull
	}
	s.used += reserve
	s.blobs[id] = blob{meeting: meeting, pending: true}
	s.mu.Unlock()
	release := func(n int64) {
		s.mu.Lock()
		s.used -= n
		delete(s.blobs, id)
		s.mu.Unlock()
	}

	tmp, err := os.CreateTemp(s.dir, "upload-*")
	if err != nil {
		release(reserve)
		return "", storageErr(err)
	}
	n, err := io.Copy(tmp, io.LimitReader(r, s.cfg.MaxSize+1))
	if err == nil && n > s.cfg.MaxSize {
		err = ErrTooLarge
	}
	if err == nil && sizeHint > 0 && n != sizeHint {
		err = fmt.Errorf("the upload ended after %d of %d bytes", n, sizeHint)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.dir, id))
	}
	if err != nil {
		os.Remove(tmp.Name())
		release(reserve)
		if errors.Is(err, ErrTooLarge) {
			return "", err
		}
		return "", storageErr(err)
	}
	s.mu.Lock()
	s.used += n - reserve
	s.blobs[id] = blob{meeting: meeting, size: n, created: s.cfg.Clock.Now()}
	s.mu.Unlock()
	return id, nil
}

func storageErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrStorageFull
	}
	return fmt.Errorf("store file: %w", err)
}

// Get opens the blob id of meeting; a blob of another meeting is
// ErrNotFound, as is an unknown one.
func (s *Store) Get(meeting, id string) (*os.File, int64, error) {
	s.Sweep()
	s.mu.Lock()
	b, ok := s.blobs[id]
	s.mu.Unlock()
	if !ok || b.pending || b.meeting != meeting || !validID(id) {
		return nil, 0, ErrNotFound
	}
	f, err := os.Open(filepath.Join(s.dir, id))
	if err != nil {
		return nil, 0, ErrNotFound
	}
	return f, b.size, nil
}

// DeleteMeeting removes every blob of a meeting that ended.
func (s *Store) DeleteMeeting(meeting string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, b := range s.blobs {
		if b.meeting == meeting && !b.pending {
			s.removeLocked(id, b)
		}
	}
}

// Sweep removes blobs older than the TTL.
func (s *Store) Sweep() {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, b := range s.blobs {
		if !b.pending && now.Sub(b.created) >= s.cfg.TTL {
			s.removeLocked(id, b)
		}
	}
}

// Used reports the bytes stored.
func (s *Store) Used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

func (s *Store) removeLocked(id string, b blob) {
	os.Remove(filepath.Join(s.dir, id))
	delete(s.blobs, id)
	s.used -= b.size
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}
