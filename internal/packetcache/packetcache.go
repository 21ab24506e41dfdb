// Package packetcache keeps the most recent RTP packets of one track so that
// retransmission requests (NACK) from any subscriber can be answered without
// asking the publisher again. It allocates all its memory up front.
package packetcache

import "sync"

// MaxPacketSize is the largest packet the cache stores; larger packets are
// not cached (they do not occur with a standard MTU).
const MaxPacketSize = 1500

type entry struct {
	seq    uint16
	length uint16 // 0 = empty
	buf    [MaxPacketSize]byte
}

// Cache is a ring of the last N packets indexed by RTP sequence number.
// It is safe for concurrent use: one writer (the track's reader) and any
// number of readers (subscribers' NACK handlers).
type Cache struct {
	mu      sync.Mutex
	entries []entry
}

// New returns a cache holding up to size packets. size is rounded up to a
// power of two so that sequence numbers map to slots with a mask.
func New(size int) *Cache {
	n := 1
	for n < size {
		n <<= 1
	}
	return &Cache{entries: make([]entry, n)}
}

// Store copies a marshalled RTP packet with sequence number seq into the
// cache, replacing whatever occupied its slot.
func (c *Cache) Store(seq uint16, packet []byte) {
	if len(packet) > MaxPacketSize || len(packet) == 0 {
		return
	}
	c.mu.Lock()
	e := &c.entries[int(seq)&(len(c.entries)-1)]
	e.seq = seq
	e.length = uint16(copy(e.buf[:], packet))
	c.mu.Unlock()
}

// Get copies the packet with sequence number seq into buf and returns its
// length, or 0 when the packet is no longer (or was never) in the cache or
// buf is too small.
func (c *Cache) Get(seq uint16, buf []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.entries[int(seq)&(len(c.entries)-1)]
	if e.length == 0 || e.seq != seq || int(e.length) > len(buf) {
		return 0
	}
	return copy(buf, e.buf[:e.length])
}

// Len reports the number of slots.
func (c *Cache) Len() int { return len(c.entries) }
