package nodeconf

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"conclave/internal/store"
)

// Source is what the publisher reads: the management store and the
// cluster CA's revocations.
type Source interface {
	ListRooms(ctx context.Context) ([]store.Room, error)
	RoomMembers(ctx context.Context, roomID int64) ([]store.RoomMember, error)
	ListNodes(ctx context.Context) ([]store.Node, error)
}

// Publisher keeps the configuration bucket equal to the management
// store. It compares what it would write with what it wrote last, so a
// round without changes writes nothing.
type Publisher struct {
	src     Source
	revoked func() []string
	more    Published
	kv      jetstream.KeyValue
	log     *slog.Logger
	written map[string][32]byte // key -> hash of the value written
	kick    chan struct{}
}

// PublishInterval is how often the publisher compares the store with the
// bucket: a room changed with the shell (conclave admin) reaches the
// nodes within it; one changed through the API at once (Changed).
const PublishInterval = 5 * time.Second

// NewPublisher returns a publisher writing to kv. revoked returns the
// serials of the revoked node certificates.
func NewPublisher(src Source, revoked func() []string, more Published, kv jetstream.KeyValue, log *slog.Logger) *Publisher {
	return &Publisher{src: src, revoked: revoked, more: more, kv: kv, log: log, kick: make(chan struct{}, 1)}
}

// Changed asks for a round now (a room was changed).
func (p *Publisher) Changed() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(PublishInterval)
	defer t.Stop()
	for {
		if err := p.Sync(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("cluster: publishing the configuration failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

// Sync makes one round: every room, the node directory and the
// revocations, written where they differ from the last round; rooms that
// no longer exist are deleted.
func (p *Publisher) Sync(ctx context.Context) error {
	want := map[string][]byte{}
	rooms, err := p.src.ListRooms(ctx)
	if err != nil {
		return fmt.Errorf("list rooms: %w", err)
	}
	for _, r := range rooms {
		members, err := p.src.RoomMembers(ctx, r.ID)
		if err != nil {
			return fmt.Errorf("members of %s: %w", r.Alias, err)
		}
		if r.Access == "" {
			r = store.DefaultRoomAccess(r)
		}
		data, err := json.Marshal(FromStore(r, members))
		if err != nil {
			return err
		}
		want[RoomKey(r.Alias)] = data
	}
	nodes, err := p.src.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	dir := []Node{}
	for _, n := range nodes {
		if n.RemovedAt.IsZero() {
			dir = append(dir, Node{Name: n.Name, Role: n.Role, Labels: n.Labels})
		}
	}
	want[keyNodes], _ = json.Marshal(dir)
	revoked := slices.Clone(p.revoked())
	slices.Sort(revoked)
	if revoked == nil {
		revoked = []string{}
	}
	want[keyRevoked], _ = json.Marshal(revoked)
	want[keyOrg], _ = json.Marshal(p.more.Org)
	want[keyPolicy], _ = json.Marshal(p.more.Policy)
	want[keyManagement], _ = json.Marshal(p.more.Management)

	if p.written == nil {
		// First round after a (re)start: learn what the bucket holds, so
		// that rooms deleted meanwhile are deleted there too.
		if err := p.load(ctx); err != nil {
			return err
		}
	}
	for key, data := range want {
		h := sha256.Sum256(data)
		if old, ok := p.written[key]; ok && old == h {
			continue
		}
		if _, err := p.kv.Put(ctx, key, data); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		p.written[key] = h
	}
	for key := range p.written {
		if _, ok := want[key]; !ok && strings.HasPrefix(key, roomPrefix) {
			if err := p.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("delete %s: %w", key, err)
			}
			delete(p.written, key)
		}
	}
	return nil
}

// load reads the hashes of what the bucket holds now.
func (p *Publisher) load(ctx context.Context) error {
	written := map[string][32]byte{}
	keys, err := p.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list configuration keys: %w", err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	for _, k := range names {
		e, err := p.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		written[k] = sha256.Sum256(e.Value())
	}
	p.written = written
	return nil
}
