package mediasock

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/clock"
)

// Batched sends on the media socket.
//
// The SFU's up layer loop reads the packets of one video frame and then
// writes them, subscriber after subscriber, through Pion's stack, which
// hands each encrypted datagram to the media socket (Socket). Around one
// subscriber's packets the loop holds the socket: the datagrams
// written meanwhile are queued, and release sends the queue, each run of
// equal-sized datagrams to one address in a single system call with UDP
// generic segmentation offload (GSO, Linux 4.18 and later) when the kernel
// takes it. Much of the kernel's cost of a send is per call, not per
// datagram: at 10 x 100 on loopback a GSO call carrying about five
// datagrams took about 18 µs, a single datagram 8 µs
// (docs/benchmarks.md, "Frame by frame, with GSO").
//
// Any goroutine's datagrams are queued while someone holds, and the next
// release sends them: nothing waits longer than one subscriber's share of
// a fan-out, or maxQueueAge if a holder is stuck. Releases send one after
// the other, so datagrams to one address leave in the order they were
// written.

// maxSegments bounds the datagrams of one GSO send (the kernel's
// UDP_MAX_SEGMENTS is 64 before Linux 6.9) and maxGSOBytes their total.
const (
	maxSegments = 64
	maxGSOBytes = 60000
)

// maxQueuedBytes bounds what a held socket queues, and maxQueueAge how
// long the oldest datagram may wait: beyond either, datagrams are sent at
// once. A subscriber's share of a frame takes tens of microseconds to
// write; a holder stuck in a write elsewhere (a TCP subscriber whose
// connection is full) must not hold up everyone else's.
const (
	maxQueuedBytes = 1 << 20
	maxQueueAge    = 2 * time.Millisecond
)

type queuedDatagram struct {
	addr   netip.AddrPort
	off, n int
}

type sendQueue struct {
	buf   []byte
	items []queuedDatagram
	done  []bool // scratch of send: items already sent
	idx   []int  // scratch of send: one address's items
}

func (q *sendQueue) add(b []byte, addr netip.AddrPort) {
	q.items = append(q.items, queuedDatagram{addr: addr, off: len(q.buf), n: len(b)})
	q.buf = append(q.buf, b...)
}

func (q *sendQueue) reset() {
	q.buf = q.buf[:0]
	q.items = q.items[:0]
}

func (q *sendQueue) datagram(i int) []byte {
	it := q.items[i]
	return q.buf[it.off : it.off+it.n]
}

// datagramWriter sends what a sendBatcher releases.
type datagramWriter interface {
	// writeDatagram sends one datagram; an error is the network's.
	writeDatagram(b []byte, addr netip.AddrPort)
	// writeSegments sends b as datagrams of segment bytes (the last may
	// be shorter) in one system call, or fails without sending.
	writeSegments(b []byte, segment int, addr netip.AddrPort) error
}

// sendBatcher is the batching state of a media socket.
type sendBatcher struct {
	out     datagramWriter
	clock   clock.Clock // ages the queue; nil: clock.System
	held    atomic.Int32
	qmu     sync.Mutex // guards queue, since
	queue   sendQueue
	since   int64      // when the oldest queued datagram came, Unix nanoseconds
	flushMu sync.Mutex // one release sends at a time; guards sending, scratch
	sending sendQueue
	scratch []byte

	gso      atomic.Bool   // the kernel takes UDP_SEGMENT on this socket
	refused  func(error)   // called once if the kernel refuses a GSO send
	gsoSends atomic.Uint64 // GSO system calls made
	gsoDgram atomic.Uint64 // datagrams they carried
	packets  atomic.Uint64 // datagrams handed to the socket
	bytes    atomic.Uint64 // their bytes
}

// queued queues b for addr if the socket is held, and reports whether it
// did. When the queue is full or too old it sends the queue first and
// says no, so that b, sent by the caller, still follows what was queued
// before it.
func (s *sendBatcher) queued(b []byte, addr netip.AddrPort) bool {
	if s.held.Load() == 0 {
		return false
	}
	now := clock.Or(s.clock).Now().UnixNano()
	s.qmu.Lock()
	if s.held.Load() == 0 {
		s.qmu.Unlock()
		return false
	}
	if len(s.queue.items) == 0 {
		s.since = now
	} else if now-s.since > int64(maxQueueAge) || len(s.queue.buf)+len(b) > maxQueuedBytes {
		s.qmu.Unlock()
		s.flush()
		return false
	}
	s.queue.add(b, addr)
	s.qmu.Unlock()
	return true
}

// hold starts queueing the socket's sends.
func (s *sendBatcher) hold() { s.held.Add(1) }

// release ends one hold and sends what is queued.
func (s *sendBatcher) release() {
	s.held.Add(-1)
	s.flush()
}

// flush sends what is queued.
func (s *sendBatcher) flush() {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.qmu.Lock()
	if len(s.queue.items) == 0 {
		s.qmu.Unlock()
		return
	}
	s.queue, s.sending = s.sending, s.queue
	s.queue.reset()
	s.qmu.Unlock()

	q := &s.sending
	if cap(q.done) < len(q.items) {
		q.done = make([]bool, len(q.items))
	}
	q.done = q.done[:len(q.items)]
	clear(q.done)
	for i := range q.items {
		if q.done[i] {
			continue
		}
		addr := q.items[i].addr
		q.idx = q.idx[:0]
		for j := i; j < len(q.items); j++ {
			if !q.done[j] && q.items[j].addr == addr {
				q.idx = append(q.idx, j)
				q.done[j] = true
			}
		}
		s.sendRuns(q, addr)
	}
}

// sendRuns sends one address's queued datagrams, q.idx, in order: runs
// of one size (and a last one no larger) in one call each.
func (s *sendBatcher) sendRuns(q *sendQueue, addr netip.AddrPort) {
	for k := 0; k < len(q.idx); {
		size := q.items[q.idx[k]].n
		end, total := k+1, size
		if s.gso.Load() {
			for end < len(q.idx) && end-k < maxSegments {
				n := q.items[q.idx[end]].n
				if n > size || total+n > maxGSOBytes {
					break
				}
				total += n
				end++
				if n < size {
					break // a shorter datagram ends the run
				}
			}
		}
		s.packets.Add(uint64(end - k))
		s.bytes.Add(uint64(total))
		if end-k == 1 {
			s.out.writeDatagram(q.datagram(q.idx[k]), addr)
			k = end
			continue
		}
		s.scratch = s.scratch[:0]
		for _, i := range q.idx[k:end] {
			s.scratch = append(s.scratch, q.datagram(i)...)
		}
		if err := s.out.writeSegments(s.scratch, size, addr); err != nil {
			if gsoRefused(err) && s.gso.Swap(false) {
				// The route does not take GSO (no checksum offload,
				// IPsec): from now on every datagram goes alone.
				if s.refused != nil {
					s.refused(err)
				}
			}
			// Each datagram gets its own chance (a network error
			// fails them alike).
			for _, i := range q.idx[k:end] {
				s.out.writeDatagram(q.datagram(i), addr)
			}
		} else {
			s.gsoSends.Add(1)
			s.gsoDgram.Add(uint64(end - k))
		}
		k = end
	}
}
