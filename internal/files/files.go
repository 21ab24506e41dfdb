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
	"strings"
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
	// ErrQuota refuses a file that would take its sender or its meeting
	// over their share of the store.
	ErrQuota = errors.New("you have shared as much as one participant (or one meeting) may")
	// ErrMeetingEnded stops an upload whose meeting ended meanwhile.
	ErrMeetingEnded = errors.New("the meeting ended during the upload")
)

// Default quotas.
const (
	DefaultParticipantQuota = 250 << 20
	DefaultMeetingQuota     = 1 << 30
)

// reserveStep is how much an upload of unknown length reserves at a time.
const reserveStep = 1 << 20

// Config sets the limits of a Store.
type Config struct {
	// MaxSize is the largest blob accepted (100 MiB).
	MaxSize int64
	// Quota bounds the bytes stored in all (10 GiB).
	Quota int64
	// ParticipantQuota bounds the bytes one participant stores in its
	// meeting (DefaultParticipantQuota); MeetingQuota those of one meeting
	// (DefaultMeetingQuota). Uploads in progress count.
	ParticipantQuota, MeetingQuota int64
	// TTL is how long a blob is kept at most (24 h); blobs also go when
	// their meeting ends.
	TTL time.Duration
	// Clock tells the time files expire by; nil means clock.System.
	Clock clock.Clock
}

type blob struct {
	meeting   string
	owner     string
	size      int64 // stored, or reserved while pending
	created   time.Time
	pending   bool // being uploaded
	cancelled bool // its meeting ended during the upload
}

// Store keeps blobs in one directory.
type Store struct {
	dir string
	cfg Config

	mu       sync.Mutex
	blobs    map[string]*blob
	used     int64                 // bytes stored, plus bytes reserved by uploads
	meetings map[string]int64      // the same, per meeting
	owners   map[string]int64      // the same, per meeting and participant
	remote   map[string]remoteBlob // blobs other nodes keep, by meeting/id (remote.go)
	onStored []func(Ref)
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
	if cfg.ParticipantQuota <= 0 {
		cfg.ParticipantQuota = DefaultParticipantQuota
	}
	if cfg.MeetingQuota <= 0 {
		cfg.MeetingQuota = DefaultMeetingQuota
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
	return &Store{dir: dir, cfg: cfg, blobs: map[string]*blob{},
		meetings: map[string]int64{}, owners: map[string]int64{}, remote: map[string]remoteBlob{}}, nil
}

// MaxSize is the largest blob accepted.
func (s *Store) MaxSize() int64 { return s.cfg.MaxSize }

// Put stores the blob read from r for owner (a participant) of meeting
// under a new random id and returns the id. A blob over MaxSize gives
// ErrTooLarge, one over its owner's or meeting's quota ErrQuota, a full
// store or disk ErrStorageFull, an upload whose meeting ended meanwhile
// ErrMeetingEnded; in every failure nothing is left behind.
func (s *Store) Put(meeting, owner string, r io.Reader, sizeHint int64) (string, error) {
	return s.PutID(meeting, owner, newID(), r, sizeHint)
}

// PutID is Put under an id the client chose (32 hex digits): E2EE binds
// the file id into every encrypted chunk, so the client fixes it before
// encrypting. A malformed id gives ErrNotFound, a taken one ErrExists.
//
// Space is reserved against the quotas before it is written: all of it
// when the size is known, else a MiB at a time as the bytes arrive, so
// that an upload of unknown length holds only what it sent.
func (s *Store) PutID(meeting, owner, id string, r io.Reader, sizeHint int64) (string, error) {
	if !validID(id) {
		return "", ErrNotFound
	}
	if sizeHint > s.cfg.MaxSize {
		return "", ErrTooLarge
	}
	s.Sweep()
	owner = meeting + "/" + owner
	s.mu.Lock()
	if _, taken := s.blobs[id]; taken {
		s.mu.Unlock()
		return "", ErrExists
	}
	if _, taken := s.remote[remoteKey(meeting, id)]; taken {
		// Another node of the meeting holds a blob under this id.
		s.mu.Unlock()
		return "", ErrExists
	}
	b := &blob{meeting: meeting, owner: owner, pending: true}
	s.blobs[id] = b
	s.mu.Unlock()
	fail := func(err error) (string, error) {
		s.mu.Lock()
		s.releaseLocked(b, b.size)
		delete(s.blobs, id)
		s.mu.Unlock()
		return "", err
	}
	if sizeHint > 0 {
		if err := s.reserve(b, sizeHint); err != nil {
			return fail(err)
		}
	}

	tmp, err := os.CreateTemp(s.dir, "upload-*")
	if err != nil {
		return fail(storageErr(err))
	}
	n, err := io.Copy(tmp, &reservingReader{r: io.LimitReader(r, s.cfg.MaxSize+1), s: s, b: b})
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
		switch {
		case errors.Is(err, ErrTooLarge), errors.Is(err, ErrQuota), errors.Is(err, ErrStorageFull), errors.Is(err, ErrMeetingEnded):
			return fail(err)
		}
		return fail(storageErr(err))
	}
	s.mu.Lock()
	if b.cancelled {
		// The meeting ended while the last bytes were written.
		os.Remove(filepath.Join(s.dir, id))
		s.releaseLocked(b, b.size)
		delete(s.blobs, id)
		s.mu.Unlock()
		return "", ErrMeetingEnded
	}
	s.releaseLocked(b, b.size-n) // give back what was reserved beyond n
	b.size, b.pending, b.created = n, false, s.cfg.Clock.Now()
	hooks := s.onStored
	s.mu.Unlock()
	for _, f := range hooks {
		f(Ref{Meeting: meeting, ID: id, Size: n})
	}
	return id, nil
}

// reserve counts n more bytes for b against the store's, its meeting's
// and its owner's quotas.
func (s *Store) reserve(b *blob, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case b.cancelled:
		return ErrMeetingEnded
	case s.owners[b.owner]+n > s.cfg.ParticipantQuota, s.meetings[b.meeting]+n > s.cfg.MeetingQuota:
		return ErrQuota
	case s.used+n > s.cfg.Quota:
		return ErrStorageFull
	}
	s.used += n
	s.meetings[b.meeting] += n
	s.owners[b.owner] += n
	b.size += n
	return nil
}

// releaseLocked gives back n bytes of b's reservation (not b.size).
func (s *Store) releaseLocked(b *blob, n int64) {
	if n == 0 {
		return
	}
	s.used -= n
	if s.meetings[b.meeting] -= n; s.meetings[b.meeting] <= 0 {
		delete(s.meetings, b.meeting)
	}
	if s.owners[b.owner] -= n; s.owners[b.owner] <= 0 {
		delete(s.owners, b.owner)
	}
}

// reservingReader reserves space before it passes bytes on, a step at a
// time, and stops when the blob's meeting ends.
type reservingReader struct {
	r    io.Reader
	s    *Store
	b    *blob
	read int64
}

func (rr *reservingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.s.mu.Lock()
	reserved, cancelled := rr.b.size, rr.b.cancelled
	rr.s.mu.Unlock()
	if cancelled {
		return 0, ErrMeetingEnded
	}
	if total := rr.read + int64(n); total > reserved {
		// Reserve what arrived, rounded up to a step (never past the
		// largest blob), before it is written.
		step := max(total-reserved, min(int64(reserveStep), rr.s.cfg.MaxSize+1-reserved))
		if rerr := rr.s.reserve(rr.b, step); rerr != nil {
			return 0, rerr
		}
	}
	rr.read += int64(n)
	return n, err
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

// DeleteMeeting removes every blob of a meeting that ended, and stops its
// uploads in progress: they fail with ErrMeetingEnded and leave nothing.
// It forgets the meeting's blobs on other nodes too (each node deletes
// its own when the meeting ends there).
func (s *Store) DeleteMeeting(meeting string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := meeting + "/"
	for k := range s.remote {
		if strings.HasPrefix(k, prefix) {
			delete(s.remote, k)
		}
	}
	for id, b := range s.blobs {
		switch {
		case b.meeting != meeting:
		case b.pending:
			b.cancelled = true
		default:
			s.removeLocked(id, b)
		}
	}
}

// Sweep removes blobs older than the TTL, and forgets other nodes'
// blobs learned longer than the TTL ago.
func (s *Store) Sweep() {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, rb := range s.remote {
		if now.Sub(rb.learned) >= s.cfg.TTL {
			delete(s.remote, k)
		}
	}
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

func (s *Store) removeLocked(id string, b *blob) {
	os.Remove(filepath.Join(s.dir, id))
	delete(s.blobs, id)
	s.releaseLocked(b, b.size)
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
