package secure

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/clock"
	"conclave/internal/e2ee"
)

// NewDeviceAge is how long after its first credential a device carries a
// "new device" warning in meetings.
const NewDeviceAge = 24 * time.Hour

// LogMonitor is the native client's view of the E2EE transparency log
// (docs/e2ee.md, section 13): the checkpoint it trusts (each new one only
// after a consistency proof), every record scanned with its inclusion
// proof, and what follows from them: which credentials are logged, which
// device keys are revoked, when each device was first certified, and the
// devices certified for its own account. Its state is kept in a file, so
// that a later run checks consistency with what an earlier run saw. It is
// safe for concurrent use.
type LogMonitor struct {
	api      LogAPI
	verifier note.Verifier
	ca       *ecdsa.PublicKey
	orgID    string
	path     string
	ownUser  string
	ownKey   []byte
	clock    clock.Clock

	scan      sync.Mutex // one advance at a time
	mu        sync.Mutex
	st        logState
	cp        e2ee.Checkpoint
	listeners []func(LogEvent)
}

// logState is what the state file holds.
type logState struct {
	Checkpoint []byte           `json:"checkpoint"` // signed note
	Scanned    int64            `json:"scanned"`
	Records    map[string]int64 `json:"records"`   // base64 record hash -> index
	Revoked    map[string]int64 `json:"revoked"`   // user id + device key (base64) -> unix time
	FirstCert  map[string]int64 `json:"firstCert"` // device key (base64) -> unix time of its first credential
	OwnFirst   int64            `json:"ownFirst"`  // index of this device's first credential, -1 if none yet
	Own        map[string]int64 `json:"own"`       // devices of the own account: device key -> unix time first certified
	Reported   map[string]bool  `json:"reported"`  // new devices already reported
	Split      string           `json:"split"`     // why the log is known to be split, "" if not
	User       string           `json:"user"`      // the own account's user id
	// Clock is the log's clock: the latest time a scanned record states
	// (a credential's not before, a revocation's time), at most the local
	// time of its scan. A record is no older than the records before it.
	Clock int64 `json:"clock"`
	// Checked is when this client last saw the trusted checkpoint as the
	// log's latest (Unix seconds): records after it are no older.
	Checked int64 `json:"checked"`
}

// LogEventKind says what a LogEvent reports.
type LogEventKind int

// Kinds of log events.
const (
	// LogAdvanced: the trusted checkpoint moved on (new records scanned).
	LogAdvanced LogEventKind = iota + 1
	// LogNewDevice: a device was certified for the own account (Device,
	// At).
	LogNewDevice
	// LogSplit: the server showed two views of the log that cannot both
	// be true (Text).
	LogSplit
)

// LogEvent is what a LogMonitor tells its listeners.
type LogEvent struct {
	Kind        LogEventKind
	Fingerprint string
	At          time.Time
	Text        string
}

// LogMonitorConfig sets up a LogMonitor.
type LogMonitorConfig struct {
	API         LogAPI
	VerifierKey string           // the pinned log verifier key
	OrgKey      *ecdsa.PublicKey // the pinned organisation CA key
	OrgID       string
	StatePath   string // where the state is kept; "" keeps it in memory
	UserID      string // the own account's user id, "" for a guest
	Device      *ecdsa.PublicKey
	Clock       clock.Clock
}

// NewLogMonitor loads the state file (if any) and returns the monitor.
func NewLogMonitor(cfg LogMonitorConfig) (*LogMonitor, error) {
	v, err := e2ee.LogVerifier(cfg.VerifierKey)
	if err != nil {
		return nil, err
	}
	cfg.Clock = clock.Or(cfg.Clock)
	own, _ := e2ee.MarshalPublicKey(cfg.Device)
	m := &LogMonitor{api: cfg.API, verifier: v, ca: cfg.OrgKey, orgID: cfg.OrgID, path: cfg.StatePath,
		ownUser: cfg.UserID, ownKey: own, clock: cfg.Clock}
	m.st = logState{Records: map[string]int64{}, Revoked: map[string]int64{}, FirstCert: map[string]int64{},
		OwnFirst: -1, Own: map[string]int64{}, Reported: map[string]bool{}}
	if cfg.StatePath != "" {
		data, err := os.ReadFile(cfg.StatePath)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("read the log state: %w", err)
		default:
			var st logState
			if err := json.Unmarshal(data, &st); err != nil {
				return nil, fmt.Errorf("the log state %s is damaged (%v); remove it to start over", cfg.StatePath, err)
			}
			cp, err := e2ee.OpenCheckpoint(st.Checkpoint, v)
			if err != nil {
				return nil, fmt.Errorf("the log state %s holds a checkpoint that does not verify: %w", cfg.StatePath, err)
			}
			if st.OwnFirst == 0 && st.Own == nil {
				st.OwnFirst = -1
			}
			for _, mp := range []*map[string]int64{&st.Records, &st.Revoked, &st.FirstCert, &st.Own} {
				if *mp == nil {
					*mp = map[string]int64{}
				}
			}
			if st.Reported == nil {
				st.Reported = map[string]bool{}
			}
			m.st, m.cp = st, cp
		}
	}
	switch {
	case cfg.UserID == "":
		m.ownUser = m.st.User
	case cfg.UserID != m.st.User:
		// Another account (or the first): watch it from the start.
		m.st.User, m.st.Own, m.st.Reported, m.st.OwnFirst = cfg.UserID, map[string]int64{}, map[string]bool{}, -1
		if m.st.Scanned > 0 {
			m.st.Scanned, m.st.Records = 0, map[string]int64{}
		}
	}
	return m, nil
}

// Listen adds a listener of log events; it is called without the
// monitor's lock, on the goroutine that refreshed.
func (m *LogMonitor) Listen(f func(LogEvent)) {
	m.mu.Lock()
	m.listeners = append(m.listeners, f)
	m.mu.Unlock()
}

// Checkpoint returns the trusted checkpoint (zero before the first refresh).
func (m *LogMonitor) Checkpoint() e2ee.Checkpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cp
}

// Split returns why the log is known to be split, "" if it is not.
func (m *LogMonitor) Split() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Split
}

// User returns the own account's user id ("" when unknown).
func (m *LogMonitor) User() string { return m.ownUser }

// Verifier is the pinned log key.
func (m *LogMonitor) Verifier() note.Verifier { return m.verifier }

// CredentialStatus is what the log says of a credential.
type CredentialStatus struct {
	Logged         bool      // in the trusted tree
	Revoked        bool      // its device key is revoked for its user
	FirstCertified time.Time // of its device key
}

// Status tells what the log says of a credential.
func (m *LogMonitor) Status(credential []byte) CredentialStatus {
	c, err := e2ee.ParseCredential(credential)
	if err != nil {
		return CredentialStatus{}
	}
	dev := b64(mustPoint(c.DevicePublicKey))
	h := e2ee.RecordHash(credential)
	m.mu.Lock()
	defer m.mu.Unlock()
	var st CredentialStatus
	_, st.Logged = m.st.Records[b64(h[:])]
	_, st.Revoked = m.st.Revoked[c.UserID+"/"+dev]
	if t, ok := m.st.FirstCert[dev]; ok {
		st.FirstCertified = time.Unix(t, 0)
	}
	return st
}

// Devices returns the devices certified for the own account: device key
// (65 bytes) -> time of its first credential.
func (m *LogMonitor) Devices() map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Time{}
	for k, t := range m.st.Own {
		out[k] = time.Unix(t, 0)
	}
	return out
}

func mustPoint(p *ecdsa.PublicKey) []byte {
	b, _ := e2ee.MarshalPublicKey(p)
	return b
}

// Refresh asks the server for its latest checkpoint, checks that it
// extends the trusted one, and scans the new records.
func (m *LogMonitor) Refresh(ctx context.Context) error {
	m.mu.Lock()
	from := m.cp.Size
	m.mu.Unlock()
	p, err := m.api.Prove(ctx, from, 0, nil)
	if err != nil {
		return err
	}
	cp, err := e2ee.OpenCheckpoint(p.Checkpoint, m.verifier)
	if err != nil {
		return fmt.Errorf("the log's checkpoint: %w", err)
	}
	return m.advance(ctx, cp, from, p.Consistency)
}

// Adopt takes a checkpoint a peer committed to (its signed note): a larger
// one is verified consistent with the trusted one (proof from the server)
// and becomes the trusted one; a smaller one is verified consistent too.
// It returns the trusted checkpoint after, or an error wrapping
// e2ee.ErrSplitView when the two cannot both be true.
func (m *LogMonitor) Adopt(ctx context.Context, signed []byte) (e2ee.Checkpoint, error) {
	peer, err := e2ee.OpenCheckpoint(signed, m.verifier)
	if err != nil {
		return e2ee.Checkpoint{}, err
	}
	m.mu.Lock()
	mine := m.cp
	m.mu.Unlock()
	switch {
	case peer.Equal(mine):
		return mine, nil
	case peer.Size > mine.Size:
		p, err := m.api.Prove(ctx, mine.Size, peer.Size, nil)
		if err != nil {
			return mine, err
		}
		return peer, m.advance(ctx, peer, mine.Size, p.Consistency)
	case peer.Size == mine.Size:
		return mine, m.split(fmt.Errorf("%w: the server showed two trees of %d records", e2ee.ErrSplitView, peer.Size))
	default:
		p, err := m.api.Prove(ctx, peer.Size, mine.Size, nil)
		if err != nil {
			return mine, err
		}
		if err := e2ee.VerifyConsistency(peer, mine, p.Consistency); err != nil {
			return mine, m.split(err)
		}
		return mine, nil
	}
}

func (m *LogMonitor) split(err error) error {
	m.mu.Lock()
	first := m.st.Split == ""
	if first {
		m.st.Split = err.Error()
		m.saveLocked()
	}
	m.mu.Unlock()
	if first {
		m.emit(LogEvent{Kind: LogSplit, Text: err.Error()})
	}
	return err
}

// advance checks that cp extends the trusted checkpoint (proof is a
// consistency proof from the tree of size base), scans the new records and
// trusts cp.
func (m *LogMonitor) advance(ctx context.Context, cp e2ee.Checkpoint, base int64, proof tlog.TreeProof) error {
	m.scan.Lock()
	defer m.scan.Unlock()
	m.mu.Lock()
	old := m.cp
	m.mu.Unlock()
	if cp.Size <= old.Size && !(cp.Size == old.Size && cp.Hash != old.Hash) {
		if cp.Size == old.Size {
			if m.scanned() < cp.Size {
				return m.scanTo(ctx, cp)
			}
			m.mu.Lock()
			m.st.Checked = m.clock.Now().Unix()
			m.mu.Unlock()
			return nil
		}
		// An older tree than the trusted one (another refresh went first):
		// it must be a prefix of it.
		p, err := m.api.Prove(ctx, cp.Size, old.Size, nil)
		if err != nil {
			return err
		}
		if err := e2ee.VerifyConsistency(cp, old, p.Consistency); err != nil {
			return m.split(err)
		}
		return nil
	}
	if base != old.Size && old.Size > 0 && old.Size < cp.Size {
		p, err := m.api.Prove(ctx, old.Size, cp.Size, nil)
		if err != nil {
			return err
		}
		proof = p.Consistency
	}
	if old.Size > 0 || old.Origin != "" {
		if err := e2ee.VerifyConsistency(old, cp, proof); err != nil {
			if errors.Is(err, e2ee.ErrSplitView) {
				return m.split(err)
			}
			return err
		}
	}
	return m.scanTo(ctx, cp)
}

// scanTo scans the records not scanned yet of the tree of cp, each with
// its inclusion proof, and trusts cp.
func (m *LogMonitor) scanTo(ctx context.Context, cp e2ee.Checkpoint) error {
	var events []LogEvent
	next := m.scanned()
	// Records this client did not see when it last checked the log are
	// no older than that check (none on first use).
	var floor int64
	m.mu.Lock()
	if m.cp.Size > 0 && next >= m.cp.Size {
		floor = m.st.Checked
	}
	m.mu.Unlock()
	for next < cp.Size {
		es, err := m.api.Entries(ctx, next, cp.Size)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return errors.New("the log sent no records")
		}
		for _, e := range es {
			if err := e2ee.VerifyInclusion(cp, next, e.Record, e.Proof); err != nil {
				return fmt.Errorf("log record %d: %w", next, err)
			}
			events = append(events, m.record(next, e.Record, floor)...)
			next++
		}
	}
	m.mu.Lock()
	m.cp = cp
	m.st.Checkpoint, m.st.Scanned, m.st.Checked = cp.Note, cp.Size, m.clock.Now().Unix()
	m.saveLocked()
	m.mu.Unlock()
	for _, e := range events {
		m.emit(e)
	}
	m.emit(LogEvent{Kind: LogAdvanced})
	return nil
}

func (m *LogMonitor) scanned() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Scanned
}

// record takes in record n; floor is the earliest time it can have been
// appended as this client saw the log (0 when unknown).
func (m *LogMonitor) record(n int64, rec []byte, floor int64) []LogEvent {
	h := e2ee.RecordHash(rec)
	m.mu.Lock()
	defer m.mu.Unlock()
	// The time a record states is the server's to choose: a credential
	// minted today can say it is valid since last week. Its place in the
	// log is not: it is no older than the records before it, nor than the
	// last time this client saw the log without it.
	now := m.clock.Now().Unix()
	since := func(stated int64) int64 {
		t := max(stated, m.st.Clock, floor)
		m.st.Clock = max(m.st.Clock, min(stated, now))
		return t
	}
	if _, ok := m.st.Records[b64(h[:])]; !ok {
		m.st.Records[b64(h[:])] = n
	}
	m.st.Scanned = n + 1
	switch e2ee.KindOf(rec) {
	case e2ee.RecordCredential:
		// The validity period is checked when the credential is used;
		// here only the CA's binding matters.
		c, err := e2ee.ParseCredential(rec)
		if err != nil || c.OrgID != m.orgID || !e2ee.Verify(m.ca, c.Body, c.Signature) {
			return nil
		}
		at := since(c.NotBefore.Unix())
		dev := mustPoint(c.DevicePublicKey)
		if _, ok := m.st.FirstCert[b64(dev)]; !ok {
			m.st.FirstCert[b64(dev)] = at
		}
		if m.ownUser == "" || c.UserID != m.ownUser {
			return nil
		}
		if _, ok := m.st.Own[b64(dev)]; !ok {
			m.st.Own[b64(dev)] = at
		}
		if bytes.Equal(dev, m.ownKey) {
			if m.st.OwnFirst < 0 {
				m.st.OwnFirst = n
			}
			return nil
		}
		if m.st.OwnFirst >= 0 && !m.st.Reported[b64(dev)] {
			m.st.Reported[b64(dev)] = true
			fp, _ := e2ee.Fingerprint(c.DevicePublicKey)
			return []LogEvent{{Kind: LogNewDevice, Fingerprint: fp, At: time.Unix(at, 0)}}
		}
	case e2ee.RecordRevocation:
		r, err := e2ee.VerifyRevocation(m.ca, rec)
		if err != nil || r.OrgID != m.orgID {
			return nil
		}
		since(r.RevokedAt.Unix())
		m.st.Revoked[r.UserID+"/"+b64(mustPoint(r.DevicePublicKey))] = r.RevokedAt.Unix()
	}
	return nil
}

func (m *LogMonitor) saveLocked() {
	if m.path == "" {
		return
	}
	data, err := json.Marshal(m.st)
	if err == nil {
		err = writeFileAtomic(m.path, data)
	}
	_ = err // the state is rebuilt from the log if lost; consistency with it is what is lost
}

func (m *LogMonitor) emit(e LogEvent) {
	m.mu.Lock()
	ls := append([]func(LogEvent){}, m.listeners...)
	m.mu.Unlock()
	for _, f := range ls {
		f(e)
	}
}

// Run refreshes every interval until ctx ends; errors are reported to
// onErr (nil: ignored) and retried at the next tick.
func (m *LogMonitor) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := m.Refresh(ctx); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
