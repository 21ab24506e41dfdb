package mediasock

import "net/netip"

// Batch is one writer's datagrams to one address, sent together by
// SendBatch: the SFU's own send path encrypts a subscriber's share of a
// frame straight into one (internal/sfu, sendpath.go), with no queue
// shared between goroutines, no lock and no copy. A Batch belongs to one
// goroutine.
type Batch struct {
	Addr  netip.AddrPort
	buf   []byte
	sizes []int
	oob   []byte // the UDP_SEGMENT control message
}

// Reset empties the batch for datagrams to addr.
func (b *Batch) Reset(addr netip.AddrPort) {
	b.Addr = addr
	b.buf = b.buf[:0]
	b.sizes = b.sizes[:0]
}

// Len is the number of datagrams in the batch.
func (b *Batch) Len() int { return len(b.sizes) }

// Space returns room for a datagram of at most n bytes at the batch's
// end; Commit adds the first m of them.
func (b *Batch) Space(n int) []byte {
	if cap(b.buf)-len(b.buf) < n {
		grown := make([]byte, len(b.buf), 2*cap(b.buf)+n)
		copy(grown, b.buf)
		b.buf = grown
	}
	return b.buf[len(b.buf) : len(b.buf)+n]
}

// Commit adds the m bytes written at Space's slice as one datagram.
func (b *Batch) Commit(m int) {
	b.buf = b.buf[:len(b.buf)+m]
	b.sizes = append(b.sizes, m)
}

// SendBatch sends the batch's datagrams, in order, each run of one size
// (and a last one no larger) in one system call with UDP segmentation
// offload where the kernel takes it, and empties it. It allocates nothing
// once the batch has grown to its size.
func (s *Socket) SendBatch(b *Batch) {
	bt := &s.batch
	off := 0
	for k := 0; k < len(b.sizes); {
		size := b.sizes[k]
		end, total := k+1, size
		if bt.gso.Load() {
			for end < len(b.sizes) && end-k < maxSegments {
				n := b.sizes[end]
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
		bt.packets.Add(uint64(end - k))
		bt.bytes.Add(uint64(total))
		run := b.buf[off : off+total]
		if end-k == 1 {
			s.writeDatagram(run, b.Addr)
		} else {
			var err error
			b.oob, err = writeSegments(s.UDPConn, run, size, b.Addr, b.oob)
			if err != nil {
				if gsoRefused(err) && bt.gso.Swap(false) && bt.refused != nil {
					bt.refused(err)
				}
				for o := 0; o < total; {
					n := min(size, total-o)
					s.writeDatagram(run[o:o+n], b.Addr)
					o += n
				}
			} else {
				bt.gsoSends.Add(1)
				bt.gsoDgram.Add(uint64(end - k))
			}
		}
		off += total
		k = end
	}
	b.Reset(b.Addr)
}
