package nodeconf

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"conclave/internal/store"
)

// CacheFile is the file, in the node's directory, that keeps the last
// configuration received.
const CacheFile = "config-cache.json"

// Cache is a conference node's copy of the configuration: in memory for
// admission, on disk for a start without the management node.
type Cache struct {
	path string
	log  *slog.Logger

	mu      sync.RWMutex
	snap    Snapshot
	have    bool // a configuration was received once (now or before a restart)
	synced  bool // the bucket's current state was read since the start
	changed []func()
}

// OpenCache reads the copy kept in dir, if any.
func OpenCache(dir string, log *slog.Logger) (*Cache, error) {
	c := &Cache{path: filepath.Join(dir, CacheFile), log: log, snap: Snapshot{Rooms: map[string]Room{}}}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the configuration cache: %w", err)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("the configuration cache %s is damaged (%v): remove it, and the node fetches the configuration again from the management node", c.path, err)
	}
	if s.Rooms == nil {
		s.Rooms = map[string]Room{}
	}
	c.snap, c.have = s, true
	return c, nil
}

// OnChange registers f, called after each change applied.
func (c *Cache) OnChange(f func()) {
	c.mu.Lock()
	c.changed = append(c.changed, f)
	c.mu.Unlock()
}

// Ready reports whether the node has a configuration to admit with.
func (c *Cache) Ready() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.have
}

// Synced reports whether the configuration is the bucket's current one
// (read since the start, and kept up to date while connected).
func (c *Cache) Synced() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.synced
}

// Revision is the bucket revision last applied.
func (c *Cache) Revision() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Revision
}

// Nodes returns the node directory.
func (c *Cache) Nodes() []Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.snap.Nodes)
}

// OrgID, Name and PublicKey are the organisation's E2EE key
// (web.OrgKey).
func (c *Cache) OrgID() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Org.ID
}

// Name is the organisation's name.
func (c *Cache) Name() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Org.Name
}

// PublicKey is the organisation's E2EE public key; nil before the first
// configuration.
func (c *Cache) PublicKey() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Org.PublicKey
}

// LogVerifierKey is the E2EE transparency log's checkpoint verifier key.
func (c *Cache) LogVerifierKey() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Org.LogKey
}

// Management is where the management node serves browsers.
func (c *Cache) Management() Management {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Management
}

// Policy is the node selection policy.
func (c *Cache) Policy() Policy {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.Policy
}

// Revoked reports whether a node certificate is revoked.
func (c *Cache) Revoked(cert *x509.Certificate) bool {
	serial := hex.EncodeToString(cert.SerialNumber.Bytes())
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Contains(c.snap.Revoked, serial)
}

// RoomByAlias implements Lookup.
func (c *Cache) RoomByAlias(_ context.Context, alias string) (store.Room, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.have {
		return store.Room{}, errNoConfig
	}
	return c.snap.roomByAlias(alias)
}

// RoomMemberRole implements Lookup.
func (c *Cache) RoomMemberRole(_ context.Context, roomID, userID int64) (store.MemberRole, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snap.memberRole(roomID, userID)
}

// Watch applies the bucket's changes until ctx ends or the watch fails
// (the connection to the bus is lost for good, the bucket is gone); the
// caller starts it again. The first complete read of the bucket replaces
// the configuration, so that rooms deleted while the node was away go.
func (c *Cache) Watch(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch the configuration: %w", err)
	}
	// Stopping the watch deletes its consumer on the server, a request
	// that waits out its timeout (5 s) while the bus is unreachable: it
	// is left to finish on its own (closing the connection ends it), so
	// that a node cut off from the bus stops at once.
	defer func() { go w.Stop() }()
	fresh := Snapshot{Rooms: map[string]Room{}}
	initial := true
	check := time.NewTicker(WatchCheck)
	defer check.Stop()
	var behindAt uint64 // the revision applied when the watch was first seen behind; 0: not behind
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			// A watch is an ordered consumer on one server of the bus;
			// when that server of an external NATS cluster dies, the
			// client notices only after missing its heartbeats for 10 to
			// 20 s. Seen behind the bucket twice in a row without
			// progress, the watch is started again (on a live server).
			if initial {
				continue
			}
			last, err := lastRevision(ctx, kv)
			c.mu.RLock()
			applied := c.snap.Revision
			c.mu.RUnlock()
			switch {
			case err != nil || last <= applied:
				behindAt = 0
			case behindAt == 0 || behindAt != applied:
				behindAt = applied
			default:
				return fmt.Errorf("the configuration watch stalled at revision %d, the bucket is at %d", applied, last)
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the configuration watch ended")
			}
			if e == nil {
				// The bucket's state as of now is read.
				c.mu.Lock()
				fresh.Revision = max(fresh.Revision, c.snap.Revision)
				c.snap, c.have, c.synced = fresh, true, true
				c.mu.Unlock()
				initial = false
				c.log.Info("cluster: configuration received", "revision", fresh.Revision, "rooms", len(fresh.Rooms))
				c.saved()
				continue
			}
			deleted := e.Operation() != jetstream.KeyValuePut
			if initial {
				if err := fresh.apply(e.Key(), e.Value(), deleted); err != nil {
					c.log.Warn("cluster: configuration entry ignored", "key", e.Key(), "err", err)
				}
				fresh.Revision = max(fresh.Revision, e.Revision())
				continue
			}
			c.mu.Lock()
			err := c.snap.apply(e.Key(), e.Value(), deleted)
			c.snap.Revision = max(c.snap.Revision, e.Revision())
			c.mu.Unlock()
			if err != nil {
				c.log.Warn("cluster: configuration entry ignored", "key", e.Key(), "err", err)
			}
			c.saved()
		}
	}
}

// WatchCheck is how often Watch compares what it applied with the
// bucket's last revision.
const WatchCheck = 3 * time.Second

// lastRevision is the bucket's last revision (its stream's last
// sequence).
func lastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, errors.New("bucket status without its stream")
	}
	return bs.StreamInfo().State.LastSeq, nil
}

// Lost notes that the bus connection is gone: the copy stays in use, but
// is no longer known to be current.
func (c *Cache) Lost() {
	c.mu.Lock()
	c.synced = false
	c.mu.Unlock()
}

// saved writes the copy to disk and tells the listeners.
func (c *Cache) saved() {
	c.mu.RLock()
	data, err := json.Marshal(c.snap)
	fs := slices.Clone(c.changed)
	c.mu.RUnlock()
	if err == nil {
		err = writeFile(c.path, data)
	}
	if err != nil {
		c.log.Error("cluster: keeping the configuration on disk failed; a restart without the management node would lack it", "err", err)
	}
	for _, f := range fs {
		f()
	}
}

// writeFile replaces path atomically, readable by the owner only (it
// holds PIN hashes).
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
