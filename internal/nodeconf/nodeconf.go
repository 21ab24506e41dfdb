// Package nodeconf is the configuration a conference node needs to admit
// participants without asking the management node: the rooms (access
// mode, PIN hashes, member lists), the nodes of the cluster and the
// revoked node certificates. The management node publishes it in the
// bus's key-value bucket (Publisher); each conference node watches the
// bucket, applies what changes and keeps a copy on its disk (Cache), so
// that it starts and admits participants with the management node down.
package nodeconf

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"conclave/internal/store"
)

// Keys of the bucket.
const (
	roomPrefix = "room."
	// keyNodes holds the directory of the cluster's nodes.
	keyNodes = "nodes"
	// keyRevoked holds the serials of revoked node certificates.
	keyRevoked = "revoked"
	// keyOrg holds the organisation's E2EE key.
	keyOrg = "org"
	// keyPolicy holds the node selection policy.
	keyPolicy = "policy"
	// keyManagement holds where the management node serves browsers.
	keyManagement = "management"
)

// Management is where the management node serves browsers: conference
// nodes pass the E2EE transparency log's requests on to it.
type Management struct {
	URL string `json:"url"`
	// CA is the certificate (DER) of the authority of its web
	// certificate; nil when it is one the system trusts.
	CA []byte `json:"ca,omitempty"`
	// TicketKey is the public key (PKIX, DER; ECDSA P-384) of the
	// admission tickets the management node gives the signed-in
	// participants it sends to a conference node (internal/ticket).
	TicketKey []byte `json:"ticketKey,omitempty"`
}

// Published is what the management node publishes besides the store:
// the organisation's key, the node selection policy, its own address.
type Published struct {
	Org        Org
	Policy     Policy
	Management Management
}

// Node selection policies (docs/cluster.md, "Which node").
const (
	// SelectLocal keeps a participant on the node it reached, unless that
	// node is draining.
	SelectLocal = "local"
	// SelectLeastLoaded sends it to the least loaded node, preferring a
	// node that already hosts the meeting.
	SelectLeastLoaded = "least-loaded"
	// SelectLocation sends it to the least loaded node whose labels hold
	// the label of its network (Locations), else as SelectLeastLoaded.
	SelectLocation = "location"
)

// Policy is how participants are directed to nodes.
type Policy struct {
	Selection string     `json:"selection"`
	Locations []Location `json:"locations,omitempty"`
}

// Location names the clients of a network.
type Location struct {
	Prefix string `json:"prefix"` // CIDR, e.g. 10.1.0.0/16
	Label  string `json:"label"`
}

// ParseLocation reads "CIDR=label".
func ParseLocation(s string) (Location, error) {
	prefix, label, ok := strings.Cut(s, "=")
	if !ok || label == "" {
		return Location{}, fmt.Errorf("location %q: write it as NETWORK=LABEL, e.g. 10.1.0.0/16=paris", s)
	}
	if _, err := netip.ParsePrefix(prefix); err != nil {
		return Location{}, fmt.Errorf("location %q: %w", s, err)
	}
	return Location{Prefix: prefix, Label: label}, nil
}

// LabelOf returns the label of the most specific location holding addr,
// or "".
func (p Policy) LabelOf(addr netip.Addr) string {
	best, bits := "", -1
	for _, l := range p.Locations {
		pf, err := netip.ParsePrefix(l.Prefix)
		if err == nil && pf.Contains(addr.Unmap()) && pf.Bits() > bits {
			best, bits = l.Label, pf.Bits()
		}
	}
	return best
}

// Org is the organisation's E2EE signing key, which browsers pin
// (GET /api/e2ee/org) to check the credentials of certified devices.
type Org struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	PublicKey []byte `json:"publicKey"`
	// LogKey is the verifier key of the E2EE transparency log's
	// checkpoints (note format).
	LogKey string `json:"logKey,omitempty"`
}

// RoomKey is the bucket key of a room: the alias, lower case, in
// base64url (an alias may hold characters a key may not).
func RoomKey(alias string) string {
	return roomPrefix + base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(alias)))
}

// Room is what a node needs of a room.
type Room struct {
	ID               int64            `json:"id"`
	Alias            string           `json:"alias"`
	DisplayName      string           `json:"name"`
	OwnerID          int64            `json:"owner,omitempty"`
	Access           string           `json:"access"`
	HostPINHash      string           `json:"hostPIN,omitempty"`
	GuestPINHash     string           `json:"guestPIN,omitempty"`
	AllowGuests      bool             `json:"allowGuests,omitempty"`
	GuestsMayUnmute  bool             `json:"guestsMayUnmute,omitempty"`
	GuestsMayPresent bool             `json:"guestsMayPresent,omitempty"`
	MembersOnly      bool             `json:"membersOnly,omitempty"`
	Members          map[int64]string `json:"members,omitempty"` // user id -> store.MemberRole
}

// FromStore is the node's view of a store room and its member list.
func FromStore(r store.Room, members []store.RoomMember) Room {
	out := Room{ID: r.ID, Alias: r.Alias, DisplayName: r.DisplayName, OwnerID: r.OwnerID, Access: string(r.Access),
		HostPINHash: r.HostPINHash, GuestPINHash: r.GuestPINHash, AllowGuests: r.AllowGuests,
		GuestsMayUnmute: r.GuestsMayUnmute, GuestsMayPresent: r.GuestsMayPresent, MembersOnly: r.MembersOnly}
	for _, m := range members {
		if out.Members == nil {
			out.Members = map[int64]string{}
		}
		out.Members[m.UserID] = string(m.Role)
	}
	return out
}

// Store is the room as the store package has it.
func (r Room) Store() store.Room {
	return store.Room{ID: r.ID, Alias: r.Alias, DisplayName: r.DisplayName, OwnerID: r.OwnerID, Access: store.Access(r.Access),
		HostPINHash: r.HostPINHash, GuestPINHash: r.GuestPINHash, AllowGuests: r.AllowGuests,
		GuestsMayUnmute: r.GuestsMayUnmute, GuestsMayPresent: r.GuestsMayPresent, MembersOnly: r.MembersOnly}
}

// Node is one enrolled node.
type Node struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Labels string `json:"labels,omitempty"`
}

// Snapshot is the whole configuration at one revision of the bucket.
type Snapshot struct {
	// Revision is the bucket's revision of the last change applied.
	Revision   uint64          `json:"revision"`
	Rooms      map[string]Room `json:"rooms"` // by lower-case alias
	Nodes      []Node          `json:"nodes"`
	Revoked    []string        `json:"revoked"`
	Org        Org             `json:"org"`
	Policy     Policy          `json:"policy"`
	Management Management      `json:"management"`
}

// apply applies one entry of the bucket; deleted says it was deleted.
func (s *Snapshot) apply(key string, value []byte, deleted bool) error {
	switch {
	case strings.HasPrefix(key, roomPrefix):
		raw, err := base64.RawURLEncoding.DecodeString(key[len(roomPrefix):])
		if err != nil {
			return fmt.Errorf("configuration key %q: %w", key, err)
		}
		alias := string(raw)
		if deleted {
			delete(s.Rooms, alias)
			return nil
		}
		var r Room
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("room %q: %w", alias, err)
		}
		if strings.ToLower(r.Alias) != alias {
			return fmt.Errorf("room under key %q is called %q", alias, r.Alias)
		}
		s.Rooms[alias] = r
	case key == keyNodes:
		s.Nodes = nil
		if !deleted {
			if err := json.Unmarshal(value, &s.Nodes); err != nil {
				return fmt.Errorf("node directory: %w", err)
			}
		}
	case key == keyRevoked:
		s.Revoked = nil
		if !deleted {
			if err := json.Unmarshal(value, &s.Revoked); err != nil {
				return fmt.Errorf("revoked node certificates: %w", err)
			}
		}
	case key == keyManagement:
		s.Management = Management{}
		if !deleted {
			if err := json.Unmarshal(value, &s.Management); err != nil {
				return fmt.Errorf("management node: %w", err)
			}
		}
	case key == keyPolicy:
		s.Policy = Policy{}
		if !deleted {
			if err := json.Unmarshal(value, &s.Policy); err != nil {
				return fmt.Errorf("node selection policy: %w", err)
			}
		}
	case key == keyOrg:
		s.Org = Org{}
		if !deleted {
			if err := json.Unmarshal(value, &s.Org); err != nil {
				return fmt.Errorf("organisation key: %w", err)
			}
		}
	}
	// Unknown keys belong to a newer management node: ignored.
	return nil
}

// lookup implements the access gate's questions on a snapshot.
func (s *Snapshot) roomByAlias(alias string) (store.Room, error) {
	r, ok := s.Rooms[strings.ToLower(alias)]
	if !ok {
		return store.Room{}, store.ErrNotFound
	}
	return r.Store(), nil
}

func (s *Snapshot) memberRole(roomID, userID int64) (store.MemberRole, error) {
	for _, r := range s.Rooms {
		if r.ID == roomID {
			if role, ok := r.Members[userID]; ok {
				return store.MemberRole(role), nil
			}
			return "", store.ErrNotFound
		}
	}
	return "", store.ErrNotFound
}

// errNoConfig: the node has never received a configuration.
var errNoConfig = errors.New("this node has no configuration yet: it needs to reach the management node once")

// Lookup is what the access gate asks of the configuration.
type Lookup interface {
	RoomByAlias(ctx context.Context, alias string) (store.Room, error)
	RoomMemberRole(ctx context.Context, roomID, userID int64) (store.MemberRole, error)
}
