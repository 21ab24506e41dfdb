package nodeconf

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"conclave/internal/store"
)

// TestCacheSurvivesRestart: what the node applied is found again after a
// restart, from the file alone; a damaged file is an error that says what
// to do.
func TestCacheSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	c, err := OpenCache(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.RoomByAlias(ctx, "Board"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a node without configuration answered %v", err)
	}
	room, _ := json.Marshal(FromStore(store.Room{ID: 7, Alias: "Board", Access: store.AccessPIN, HostPINHash: "$argon2id$x"},
		[]store.RoomMember{{RoomID: 7, UserID: 3, Role: store.MemberHost}}))
	c.mu.Lock()
	if err := c.snap.apply(RoomKey("Board"), room, false); err != nil {
		t.Fatal(err)
	}
	c.snap.apply(keyRevoked, []byte(`["0a0b"]`), false)
	c.have = true
	c.mu.Unlock()
	c.saved()

	if fi, err := os.Stat(filepath.Join(dir, CacheFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file %v %v", fi, err)
	}
	c, err = OpenCache(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.RoomByAlias(ctx, "board")
	if err != nil || r.HostPINHash != "$argon2id$x" || r.Access != store.AccessPIN {
		t.Fatalf("room after restart %+v %v", r, err)
	}
	if role, err := c.RoomMemberRole(ctx, 7, 3); err != nil || role != store.MemberHost {
		t.Fatalf("member role %q %v", role, err)
	}
	if _, err := c.RoomByAlias(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown room: %v", err)
	}
	// A room deleted on the management node goes.
	c.mu.Lock()
	c.snap.apply(RoomKey("board"), nil, true)
	c.mu.Unlock()
	if _, err := c.RoomByAlias(ctx, "board"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted room: %v", err)
	}
	// An entry under the wrong key is refused.
	if err := (&Snapshot{Rooms: map[string]Room{}}).apply(RoomKey("other"), room, false); err == nil {
		t.Fatal("a room under another room's key was applied")
	}

	os.WriteFile(filepath.Join(dir, CacheFile), []byte("{not json"), 0o600)
	if _, err := OpenCache(dir, log); err == nil {
		t.Fatal("a damaged cache was accepted")
	}
}

// FuzzApply: entries of the bucket never panic the node.
func FuzzApply(f *testing.F) {
	f.Add(RoomKey("board"), []byte(`{"alias":"board","access":"pin"}`))
	f.Add(keyNodes, []byte(`[{"name":"a","role":"conference"}]`))
	f.Add(keyRevoked, []byte(`["00"]`))
	f.Add(keyOrg, []byte(`{"id":"x","publicKey":"AAAA"}`))
	f.Add("room.!!", []byte(`{}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		s := &Snapshot{Rooms: map[string]Room{}}
		_ = s.apply(key, value, false)
		_ = s.apply(key, value, true)
	})
}
