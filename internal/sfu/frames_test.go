package sfu

import (
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"conclave/internal/conn"
	"conclave/internal/sfu/mediasock"
	"conclave/internal/testutil/fakeclock"
)

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
	sock *mediasock.Socket
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
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// No queue gets too old, however slow the machine (the race
	// detector): the grouping is what is checked.
	sock := mediasock.New(udp, mediasock.Config{Clock: fakeclock.New(time.Unix(0, 0))})
	defer sock.Close()
	u := testTrack(1)
	u.sock = sock
	var receivers []*net.UDPConn
	for i := 0; i < 2; i++ {
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		receivers = append(receivers, rc)
		d := newDownTrack(u, conn.TrackOptions{Stream: "alice"})
		d.bind(5555, 100, 0, &socketWriter{sock: sock, addr: rc.LocalAddr().(*net.UDPAddr).AddrPort()})
		d.ready.Store(true)
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
	switch st := sock.SendStats(); {
	case st.GSO:
		// Frames of 3, 2 and 3 packets to each of 2 subscribers.
		if s, n := st.GSOSends, st.GSODatagrams; s != 6 || n != 16 {
			t.Errorf("%d GSO sends of %d datagrams, want 6 of 16", s, n)
		}
	case runtime.GOOS == "linux":
		// The server is meant for Linux 4.18 or later, as the load
		// test's and the layer test's GSO checks assume.
		t.Error("this Linux kernel does not take UDP_SEGMENT")
	}
}
