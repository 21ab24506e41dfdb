// Package mediasock is the SFU's media socket: the one UDP socket that
// every peer connection's ICE shares. Below Pion it does these things,
// behind a small API:
//
//   - stamping: it asks the kernel for the receive time of every datagram
//     (SO_TIMESTAMPNS) and remembers those of RTP packets, so that the
//     delay the server adds can be measured (arrival.go, Forwarded,
//     ForwardDelay);
//   - batching: between Hold and Release the datagrams Pion writes are
//     queued, and Release sends each run to one address in one system
//     call with UDP segmentation offload where the kernel takes it
//     (sendbatch.go, SendStats);
//   - direct batches: the SFU's own send path encrypts a subscriber's
//     share of a frame into a Batch owned by the forwarding goroutine,
//     which SendBatch sends the same way, without the shared queue
//     (batch.go);
//   - an RTCP hook: the own send path takes its subscribers' RTCP off the
//     socket before the ICE mux sees it (SetRTCPHandler);
//   - socket options: large kernel buffers, and the checks of what the
//     kernel granted (sockopt_*.go).
//
// The batching relies on Pion writing synchronously: a down track's
// WriteRTP must reach WriteToAddrPort on the calling goroutine, before it
// returns (internal/sfu tests this contract, TestPionWritesSynchronously).
package mediasock

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"conclave/internal/clock"
	"conclave/internal/metrics"
)

// BufferSize is the kernel buffer asked for, each way, on the media
// socket. Every participant's media arrives on this one socket, read by
// one goroutine: while the process is busy for a moment (a leave makes
// every subscriber renegotiate and every client rotate its key), the
// default 208 KiB holds about a hundred packets, and the rest would be
// dropped, each loss costing a retransmission or a key frame.
const BufferSize = 4 << 20

// Config sets up a Socket.
type Config struct {
	// Logger receives the socket's warnings; nil means slog.Default().
	Logger *slog.Logger
	// Clock ages the send queue (maxQueueAge); nil means clock.System.
	Clock clock.Clock
}

// Socket is the media socket as the ICE UDP mux reads and writes it
// (net.PacketConn and ice.AddrPortReaderWriter). It is safe for
// concurrent use: one goroutine reads (the mux's), any number write.
type Socket struct {
	*net.UDPConn
	stamps *arrivals      // nil: the kernel gives no receive timestamps
	delay  delayHistogram // what Forwarded measured
	oob    []byte         // read by the mux's single reader goroutine only
	batch  sendBatcher
	gsoOOB []byte // the UDP_SEGMENT control message; under batch.flushMu
	rtcp   atomic.Pointer[RTCPHandler]
}

// RTCPHandler is offered every RTCP datagram the socket reads, on the
// reading goroutine, before the ICE mux sees it: the SFU's own send path
// takes its subscribers' feedback here (internal/sfu, sendpath.go). It
// reports whether it took the datagram; a datagram it did not take goes
// on to Pion. It must not keep b.
type RTCPHandler func(b []byte, from netip.AddrPort) bool

// SetRTCPHandler installs h (nil: none).
func (s *Socket) SetRTCPHandler(h RTCPHandler) {
	if h == nil {
		s.rtcp.Store(nil)
		return
	}
	s.rtcp.Store(&h)
}

// isRTCP tells RTCP from RTP, STUN and DTLS on a multiplexed port (RFC
// 5761, section 4; RFC 7983): version 2 and a packet type of 192-223.
func isRTCP(b []byte) bool {
	return len(b) >= 8 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

// Listen opens the media socket on a UDP address, asks for BufferSize
// buffers (the kernel caps them at net.core.rmem_max and wmem_max, which
// is logged), receive timestamps and UDP segmentation offload.
func Listen(addr string, cfg Config) (*Socket, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("media UDP address %s: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", a)
	if err != nil {
		return nil, err
	}
	setBuffers(c, log)
	s := New(c, cfg)
	s.batch.refused = func(err error) {
		log.Warn("media socket: the kernel refused UDP segmentation offload; sending one datagram per system call from now on", "err", err)
	}
	return s, nil
}

// New makes a Socket of an open UDP socket: receive timestamps and UDP
// segmentation offload are turned on where the kernel takes them (if it
// refuses, the socket works the same and measures nothing, or sends one
// datagram per call).
func New(c *net.UDPConn, cfg Config) *Socket {
	s := &Socket{UDPConn: c, stamps: new(arrivals), oob: make([]byte, 64)}
	if enableTimestamps(c) != nil {
		s.stamps = nil
	}
	s.batch.out = s
	s.batch.clock = cfg.Clock
	s.batch.gso.Store(gsoSupported(c))
	return s
}

// Hold starts queueing the socket's sends (every writer's), for a batch
// that Release sends. Holds nest.
func (s *Socket) Hold() { s.batch.hold() }

// Release ends one Hold and sends what is queued.
func (s *Socket) Release() { s.batch.release() }

// Queued returns what waits in the send queue now: datagrams and bytes
// written while the socket is held, not yet sent.
func (s *Socket) Queued() (datagrams, bytes int) {
	s.batch.qmu.Lock()
	defer s.batch.qmu.Unlock()
	return len(s.batch.queue.items), len(s.batch.queue.buf)
}

// Forwarded records that the RTP packet (ssrc, seq) received on this
// socket has been forwarded to its last subscriber at now (Unix
// nanoseconds): the delay since the kernel received it goes into the
// ForwardDelay histogram. It allocates nothing; a packet whose receive
// time is not known any more is not counted.
func (s *Socket) Forwarded(ssrc uint32, seq uint16, now int64) {
	if s.stamps == nil {
		return
	}
	if at, ok := s.stamps.get(ssrc, seq); ok {
		s.delay.observe(time.Duration(now - at))
	}
}

// ForwardDelay reads the histogram of the delay the server adds to what
// it forwards: from the kernel's receive timestamp of each RTP packet to
// its last copy sent.
func (s *Socket) ForwardDelay() metrics.DelayHistogram { return s.delay.read() }

// SendStats reads the batched-send figures.
func (s *Socket) SendStats() metrics.SendStats {
	b := &s.batch
	return metrics.SendStats{GSO: b.gso.Load(), GSOSends: b.gsoSends.Load(), GSODatagrams: b.gsoDgram.Load(),
		Packets: b.packets.Load(), Bytes: b.bytes.Load()}
}

func (s *Socket) writeDatagram(b []byte, addr netip.AddrPort) {
	_, _ = s.UDPConn.WriteToUDPAddrPort(b, addr)
}

func (s *Socket) writeSegments(b []byte, segment int, addr netip.AddrPort) error {
	var err error
	s.gsoOOB, err = writeSegments(s.UDPConn, b, segment, addr, s.gsoOOB)
	return err
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter (the mux's
// allocation-free path, which it only takes by itself for a bare
// *net.UDPConn).
func (s *Socket) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, addr, err := s.read(b)
		if err != nil {
			return n, addr, err
		}
		if h := s.rtcp.Load(); h != nil && isRTCP(b[:n]) && (*h)(b[:n], addr) {
			continue // taken by the SFU's own send path
		}
		return n, addr, nil
	}
}

func (s *Socket) read(b []byte) (int, netip.AddrPort, error) {
	if s.stamps == nil {
		return s.UDPConn.ReadFromUDPAddrPort(b)
	}
	n, oobn, _, addr, err := s.UDPConn.ReadMsgUDPAddrPort(b, s.oob)
	if err != nil {
		return n, addr, err
	}
	if t, ok := kernelTimestamp(s.oob[:oobn]); ok {
		if ssrc, seq, ok := rtpIDs(b[:n]); ok {
			s.stamps.put(ssrc, seq, t)
		}
	}
	return n, addr, nil
}

// WriteToAddrPort implements ice.AddrPortReaderWriter. While the socket
// is held the datagram is queued, and sent at the release.
func (s *Socket) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if s.batch.queued(b, addr) {
		return len(b), nil
	}
	return s.UDPConn.WriteToUDPAddrPort(b, addr)
}

// ReadFrom implements net.PacketConn through ReadFromAddrPort, so that
// every read records its timestamp.
func (s *Socket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := s.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

// setBuffers asks for BufferSize each way and logs what the kernel
// granted when it is less.
func setBuffers(u *net.UDPConn, log *slog.Logger) {
	if err := u.SetReadBuffer(BufferSize); err != nil {
		log.Warn("media socket: cannot set the receive buffer", "bytes", BufferSize, "err", err)
	}
	if err := u.SetWriteBuffer(BufferSize); err != nil {
		log.Warn("media socket: cannot set the send buffer", "bytes", BufferSize, "err", err)
	}
	rcv, snd, ok := socketBuffers(u)
	// Linux reports twice the size asked for (the other half is its
	// bookkeeping); less than that means the sysctl cap applied.
	if ok && (rcv < 2*BufferSize || snd < 2*BufferSize) {
		log.Info("media socket buffers are below what Conclave asks for; raise net.core.rmem_max and net.core.wmem_max (docs/admin.md)",
			"receive", rcv/2, "send", snd/2, "wanted", BufferSize)
	}
}
