package server

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"os"
	"sync"

	"conclave/internal/bus"
	"conclave/internal/cascade"
	"conclave/internal/nodeca"
)

// peersFile keeps, in a conference node's directory, the other nodes'
// node-to-node addresses last heard on the bus, so that a node restarted
// while the management node is down finds the others again.
const peersFile = "peers.json"

// peerBook keeps the other nodes' node-to-node addresses, from their
// status on the bus, and gives them to the mesh.
type peerBook struct {
	path string // "" keeps nothing on disk
	self string
	mesh *cascade.Mesh

	mu    sync.Mutex
	addrs map[string]cascade.Peer
}

func openPeerBook(path, self string, mesh *cascade.Mesh) (*peerBook, error) {
	b := &peerBook{path: path, self: self, mesh: mesh, addrs: map[string]cascade.Peer{}}
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := json.Unmarshal(data, &b.addrs); err != nil {
				b.addrs = map[string]cascade.Peer{} // rebuilt from the bus
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	mesh.SetPeers(b.addrs)
	return b, nil
}

// heard notes a node's status.
func (b *peerBook) heard(st bus.Status) {
	if st.Name == b.self {
		return
	}
	p := cascade.Peer{Addr: st.Relay, Edge: st.Role == nodeca.RoleEdge}
	b.mu.Lock()
	if old, ok := b.addrs[st.Name]; ok && old == p {
		b.mu.Unlock()
		return
	}
	b.addrs[st.Name] = p
	addrs := make(map[string]cascade.Peer, len(b.addrs))
	for k, v := range b.addrs {
		addrs[k] = v
	}
	b.mu.Unlock()
	b.mesh.SetPeers(addrs)
	if b.path != "" {
		if data, err := json.Marshal(addrs); err == nil {
			tmp := b.path + ".tmp"
			if os.WriteFile(tmp, data, 0o600) == nil {
				os.Rename(tmp, b.path)
			}
		}
	}
}

// relayAdvertise is the node-to-node address other nodes dial
// (cascade.Advertise).
func relayAdvertise(leaf *x509.Certificate, ln net.Addr) string { return cascade.Advertise(leaf, ln) }
