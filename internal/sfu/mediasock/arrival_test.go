package mediasock

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"conclave/internal/metrics"
)

func rtpHeader(pt uint8, seq uint16, ssrc uint32) []byte {
	b := make([]byte, 20)
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

func TestRTPIDs(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"VP8", rtpHeader(96, 7, 0xdeadbeef), true},
		{"marker bit", rtpHeader(0x80|111, 7, 0xdeadbeef), true},
		{"RTCP receiver report", rtpHeader(201, 7, 1), false},
		{"RTCP transport feedback", rtpHeader(205, 7, 1), false},
		{"STUN", append([]byte{0x00, 0x01}, make([]byte, 18)...), false},
		{"DTLS", append([]byte{22, 0xfe}, make([]byte, 18)...), false},
		{"short", []byte{0x80, 96, 0, 1}, false},
	} {
		ssrc, seq, ok := rtpIDs(c.b)
		if ok != c.ok || ok && (ssrc != 0xdeadbeef || seq != 7) {
			t.Errorf("%s: %x %d %v, want ok=%v", c.name, ssrc, seq, ok, c.ok)
		}
	}
}

func TestArrivals(t *testing.T) {
	var a arrivals
	a.put(1, 100, 5)
	a.put(2, 100, 6)
	if at, ok := a.get(1, 100); !ok || at != 5 {
		t.Fatalf("get(1, 100) = %d, %v", at, ok)
	}
	if at, ok := a.get(2, 100); !ok || at != 6 {
		t.Fatalf("get(2, 100) = %d, %v", at, ok)
	}
	if _, ok := a.get(1, 101); ok {
		t.Fatal("a packet never seen has a timestamp")
	}
	// A slot reused by another packet no longer answers for the first.
	slot := arrivalSlot(arrivalKey(1, 100))
	for ssrc := uint32(3); ; ssrc++ {
		if arrivalSlot(arrivalKey(ssrc, 100)) == slot {
			a.put(ssrc, 100, 9)
			break
		}
	}
	if _, ok := a.get(1, 100); ok {
		t.Fatal("an overwritten slot still answers for its old packet")
	}
}

// The media socket records the kernel's receive time of RTP packets, and
// of nothing else; Forwarded measures the delay since.
func TestSocketStamps(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New(c, Config{})
	if s.stamps == nil {
		t.Fatal("the kernel refused SO_TIMESTAMPNS on a UDP socket")
	}
	tx, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	before := time.Now().UnixNano()
	for _, p := range [][]byte{rtpHeader(96, 42, 7), rtpHeader(200, 43, 7)} {
		if _, err := tx.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 2 {
		n, from, err := s.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 20 || from != netip.MustParseAddrPort(tx.LocalAddr().String()) {
			t.Fatalf("read %d bytes from %v", n, from)
		}
	}
	after := time.Now().UnixNano()
	at, ok := s.stamps.get(7, 42)
	if !ok || at < before-int64(time.Second) || at > after {
		t.Fatalf("RTP packet: timestamp %d, %v; want between %d and %d", at, ok, before, after)
	}
	if _, ok := s.stamps.get(7, 43); ok {
		t.Fatal("an RTCP packet was recorded")
	}
	s.Forwarded(7, 42, at+int64(3*time.Millisecond))
	s.Forwarded(7, 43, at) // not an RTP packet it received: not counted
	h := s.ForwardDelay()
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	if n != 1 || h.Counts[3] != 1 || h.Sum != 3*time.Millisecond {
		t.Fatalf("after one packet forwarded 3 ms after it came: %v, sum %v", h.Counts, h.Sum)
	}
}

func TestDelayHistogram(t *testing.T) {
	var h delayHistogram
	for _, d := range []time.Duration{-time.Millisecond, 300 * time.Microsecond, 3 * time.Millisecond, 15 * time.Millisecond, time.Minute} {
		h.observe(d)
	}
	r := h.read()
	want := map[int]uint64{0: 2, 3: 1, 5: 1, len(metrics.DelayBuckets): 1} // ≤0.5 ms (two), ≤5 ms, ≤20 ms, beyond 5 s
	for i, c := range r.Counts {
		if c != want[i] {
			t.Errorf("bucket %d: %d, want %d (%v)", i, c, want[i], r.Counts)
		}
	}
	if r.Sum != 300*time.Microsecond+3*time.Millisecond+15*time.Millisecond+time.Minute {
		t.Errorf("sum %v", r.Sum)
	}
}
