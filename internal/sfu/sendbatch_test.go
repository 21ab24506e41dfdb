package sfu

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

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

// scriptedReader plays packets to readFrames; a nil step is the read
// deadline passing.
type scriptedReader struct {
	t        *testing.T
	steps    [][]byte
	deadline time.Time
}

func (r *scriptedReader) Read(b []byte) (int, interceptor.Attributes, error) {
	if len(r.steps) == 0 {
		return 0, nil, io.EOF
	}
	step := r.steps[0]
	r.steps = r.steps[1:]
	if step == nil {
		if r.deadline.IsZero() {
			r.t.Error("a read timed out with no deadline set")
		}
		return 0, nil, &net.OpError{Op: "read", Err: timeoutError{}}
	}
	return copy(b, step), nil, nil
}

func (r *scriptedReader) SetReadDeadline(t time.Time) error {
	r.deadline = t
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string { return "i/o timeout" }
func (timeoutError) Timeout() bool { return true }

// socketWriter stands for a subscriber's peer connection that sends
// each packet, in the clear, through the media socket to addr.
type socketWriter struct {
	sock *stampConn
	addr netip.AddrPort
}

func (w *socketWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	p := rtp.Packet{Header: *h, Payload: payload}
	raw, err := p.Marshal()
	if err != nil {
		return 0, err
	}
	return w.sock.WriteToAddrPort(raw, w.addr)
}

func (w *socketWriter) Write(b []byte) (int, error) { return w.sock.WriteToAddrPort(b, w.addr) }

// The packets of a frame reach each subscriber together, through the
// real socket: one GSO send per subscriber and frame where the kernel
// offers it; every packet arrives, in order; a frame whose last packet
// does not come goes when the hold time is over.
func TestFramesGoOutTogether(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sock := newStampConn(conn, nil)
	defer sock.Close()
	// No queue gets too old, however slow the machine (the race
	// detector): the grouping is what is checked.
	sock.batch.clock = fakeclock.New(time.Unix(0, 0))
	u := testTrack(1)
	u.sends = sock
	var receivers []*net.UDPConn
	for i := 0; i < 2; i++ {
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		receivers = append(receivers, rc)
		d := newDownTrack(u)
		d.bind(5555, 100, &socketWriter{sock: sock, addr: rc.LocalAddr().(*net.UDPAddr).AddrPort()})
		u.addDown(d)
	}
	l := u.layers[0].Load()
	r := &scriptedReader{t: t, steps: [][]byte{
		// A key frame of three packets.
		vp8Packet(l.ssrc, 10, 3000, 1, 0, true, true, false, 160, 120),
		vp8Packet(l.ssrc, 11, 3000, 1, 0, false, false, false, 160, 120),
		vp8Packet(l.ssrc, 12, 3000, 1, 0, false, false, true, 160, 120),
		// A frame of two whose marker is lost: it goes when the next
		// frame begins.
		vp8Packet(l.ssrc, 13, 6000, 2, 1, false, true, false, 160, 120),
		vp8Packet(l.ssrc, 14, 6000, 2, 1, false, false, false, 160, 120),
		vp8Packet(l.ssrc, 16, 9000, 3, 2, false, true, true, 160, 120),
		// A frame that stops: it goes at the deadline.
		vp8Packet(l.ssrc, 17, 12000, 4, 3, false, true, false, 160, 120),
		nil,
		// A frame whose packets differ by a byte or two, as Chromium's
		// do: padded to one size, it goes in one call.
		vp8Packet(l.ssrc, 18, 15000, 5, 4, false, true, false, 160, 120),
		vp8Packet(l.ssrc, 19, 15000, 5, 4, false, false, false, 160, 120)[:1011],
		vp8Packet(l.ssrc, 20, 15000, 5, 4, false, false, true, 160, 120)[:1010],
	}}
	l.readFrames(r)
	if !r.deadline.IsZero() {
		t.Error("the read deadline is still set after the frames went")
	}

	wantSeqs := []uint16{10, 11, 12, 13, 14, 16, 17, 18, 19, 20}
	wantPayload := map[uint16]int{19: 999, 20: 998} // others 1000
	for i, rc := range receivers {
		_ = rc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 2048)
		var got []uint16
		for range wantSeqs {
			n, err := rc.Read(buf)
			if err != nil {
				t.Fatalf("subscriber %d: got %v, then %v", i, got, err)
			}
			var p rtp.Packet
			if err := p.Unmarshal(buf[:n]); err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
			got = append(got, p.SequenceNumber)
			want := 1000
			if n, ok := wantPayload[wantSeqs[len(got)-1]]; ok {
				want = n
			}
			if len(p.Payload) != want || p.Payload[len(p.Payload)-1] != 0xee {
				t.Errorf("subscriber %d: packet %d has %d bytes of payload ending in %#x, want %d ending in 0xee (padding dropped)",
					i, len(got)-1, len(p.Payload), p.Payload[len(p.Payload)-1], want)
			}
			if n != 1012 {
				t.Errorf("subscriber %d: packet %d is %d bytes on the wire, want 1012 (a frame's packets of one size)", i, len(got)-1, n)
			}
		}
		// Outgoing sequence numbers are the down track's own; they
		// follow the incoming ones, gap included.
		for j := 1; j < len(got); j++ {
			if got[j]-got[0] != wantSeqs[j]-wantSeqs[0] {
				t.Fatalf("subscriber %d: sequence numbers %v for incoming %v", i, got, wantSeqs)
			}
		}
	}
	switch {
	case gsoSupported(conn):
		// Frames of 3, 2 and 3 packets to each of 2 subscribers.
		if s, n := sock.batch.gsoSends.Load(), sock.batch.gsoDgram.Load(); s != 6 || n != 16 {
			t.Errorf("%d GSO sends of %d datagrams, want 6 of 16", s, n)
		}
	case runtime.GOOS == "linux":
		// The server is meant for Linux 4.18 or later, as the load
		// test's and the layer test's GSO checks assume.
		t.Error("this Linux kernel does not take UDP_SEGMENT")
	}
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
