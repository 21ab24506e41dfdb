package mediasock

import (
	"bytes"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

// recordingWriter records what a sendBatcher sends.
type recordingWriter struct {
	calls   []sentCall
	failGSO bool // the kernel refuses GSO
	failNet bool // the network fails the send
}

type sentCall struct {
	addr    netip.AddrPort
	segment int // 0: a single datagram
	data    []byte
}

func (w *recordingWriter) writeDatagram(b []byte, addr netip.AddrPort) {
	w.calls = append(w.calls, sentCall{addr: addr, data: bytes.Clone(b)})
}

func (w *recordingWriter) writeSegments(b []byte, segment int, addr netip.AddrPort) error {
	if w.failGSO {
		return syscall.EIO
	}
	if w.failNet {
		return syscall.ENETUNREACH
	}
	w.calls = append(w.calls, sentCall{addr: addr, segment: segment, data: bytes.Clone(b)})
	return nil
}

func datagram(tag byte, n int) []byte { return bytes.Repeat([]byte{tag}, n) }

func TestSendBatcherRuns(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	b := netip.MustParseAddrPort("192.0.2.2:2000")
	w := &recordingWriter{}
	var s sendBatcher
	s.out = w
	s.clock = fakeclock.New(time.Unix(0, 1))
	s.gso.Store(true)

	if s.queued(datagram(0, 10), a) {
		t.Fatal("queued while not held")
	}
	s.hold()
	// a: three of 1000 and a last of 600, one of 1000 after it (a new
	// run); b, interleaved: two of 500 and one larger, which cannot end
	// their run.
	for _, q := range []struct {
		tag  byte
		n    int
		addr netip.AddrPort
	}{{1, 1000, a}, {2, 500, b}, {3, 1000, a}, {4, 500, b}, {5, 1000, a}, {6, 600, a}, {7, 700, b}, {8, 1000, a}} {
		if !s.queued(datagram(q.tag, q.n), q.addr) {
			t.Fatalf("datagram %d not queued while held", q.tag)
		}
	}
	if len(w.calls) != 0 {
		t.Fatalf("%d sends before the release", len(w.calls))
	}
	s.release()
	want := []sentCall{
		{a, 1000, append(append(append(datagram(1, 1000), datagram(3, 1000)...), datagram(5, 1000)...), datagram(6, 600)...)},
		{a, 0, datagram(8, 1000)},
		{b, 500, append(datagram(2, 500), datagram(4, 500)...)},
		{b, 0, datagram(7, 700)},
	}
	if len(w.calls) != len(want) {
		t.Fatalf("%d sends, want %d: %+v", len(w.calls), len(want), w.calls)
	}
	for i := range want {
		g := w.calls[i]
		if g.addr != want[i].addr || g.segment != want[i].segment || !bytes.Equal(g.data, want[i].data) {
			t.Errorf("send %d: to %v, segment %d, %d bytes; want to %v, segment %d, %d bytes",
				i, g.addr, g.segment, len(g.data), want[i].addr, want[i].segment, len(want[i].data))
		}
	}
	if s.gsoSends.Load() != 2 || s.gsoDgram.Load() != 6 {
		t.Errorf("counted %d GSO sends of %d datagrams, want 2 of 6", s.gsoSends.Load(), s.gsoDgram.Load())
	}
	if s.queued(datagram(9, 10), a) {
		t.Error("queued after the release")
	}

	// A network error leaves GSO on; the run's datagrams are tried one
	// by one.
	w.calls, w.failNet = nil, true
	s.hold()
	s.queued(datagram(1, 1000), a)
	s.queued(datagram(2, 1000), a)
	s.release()
	if len(w.calls) != 2 || !s.gso.Load() {
		t.Fatalf("after a network error: %d sends, GSO %v; want 2 single sends, GSO on", len(w.calls), s.gso.Load())
	}
	w.failNet = false

	// A route that refuses GSO: the run goes datagram by datagram, and
	// later ones never try again; it is said once.
	var said []error
	s.refused = func(err error) { said = append(said, err) }
	w.calls, w.failGSO = nil, true
	for round := 0; round < 2; round++ {
		s.hold()
		s.queued(datagram(1, 1000), a)
		s.queued(datagram(2, 1000), a)
		s.release()
	}
	if len(w.calls) != 4 {
		t.Fatalf("%d sends after GSO failed, want 4 single ones", len(w.calls))
	}
	for i, c := range w.calls {
		if c.segment != 0 || c.data[0] != byte(i%2+1) {
			t.Errorf("send %d: segment %d, datagram %d", i, c.segment, c.data[0])
		}
	}
	if s.gso.Load() {
		t.Error("GSO still on after the kernel refused it")
	}
	if len(said) != 1 || !errors.Is(said[0], syscall.EIO) {
		t.Errorf("refusals said: %v, want EIO once", said)
	}
}

// A datagram another goroutine writes while the socket is held goes out
// at the release, after what was queued before it.
func TestSendBatcherOtherWriters(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	w := &recordingWriter{}
	var s sendBatcher
	s.out = w
	clk := fakeclock.New(time.Unix(0, 0))
	s.clock = clk
	s.hold()
	s.queued(datagram(1, 100), a)
	done := make(chan bool)
	go func() { done <- s.queued(datagram(2, 100), a) }()
	if !<-done {
		t.Fatal("another writer's datagram was not queued")
	}
	s.release()
	if len(w.calls) != 2 || w.calls[0].data[0] != 1 || w.calls[1].data[0] != 2 {
		t.Fatalf("sends %+v, want datagrams 1 then 2", w.calls)
	}

	// A holder that stays away (stuck in a write elsewhere) holds up
	// the others for maxQueueAge at most: then the queue goes, and the
	// new datagram is left to its writer, to send after it.
	w.calls = nil
	s.hold()
	s.queued(datagram(3, 100), a)
	clk.Advance(maxQueueAge + 1)
	if s.queued(datagram(4, 100), a) {
		t.Error("queued behind a datagram older than maxQueueAge")
	}
	if len(w.calls) != 1 || w.calls[0].data[0] != 3 {
		t.Errorf("sends %+v, want the queued datagram 3 sent", w.calls)
	}
	s.release()
}

type discardWriter struct{}

func (discardWriter) writeDatagram([]byte, netip.AddrPort)            {}
func (discardWriter) writeSegments([]byte, int, netip.AddrPort) error { return nil }

// BenchmarkSendBatcher: one subscriber's share of a frame of six packets
// (hold, queue, release); it allocates nothing in the steady state.
func BenchmarkSendBatcher(b *testing.B) {
	var s sendBatcher
	s.out = discardWriter{}
	s.gso.Store(true)
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	pkt := make([]byte, 1100)
	b.ReportAllocs()
	for b.Loop() {
		s.hold()
		for range 6 {
			s.queued(pkt, a)
		}
		s.release()
	}
}
