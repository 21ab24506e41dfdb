package mediasock

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestSendBatch: a batch's datagrams reach the receiver whole and in
// order, each run of one size (and a last shorter one) in one GSO send
// where the kernel takes it; the batch is empty afterwards, and sending a
// full batch again allocates nothing.
func TestSendBatch(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b Batch
	b.Reset(rc.LocalAddr().(*net.UDPAddr).AddrPort())
	sizes := []int{1000, 1000, 1000, 600, 700, 700}
	var want [][]byte
	for i, n := range sizes {
		d := bytes.Repeat([]byte{byte(i + 1)}, n)
		want = append(want, d)
		copy(b.Space(n+16), d)
		b.Commit(n)
	}
	s.SendBatch(&b)
	if b.Len() != 0 {
		t.Fatalf("%d datagrams left in the batch", b.Len())
	}
	buf := make([]byte, 2048)
	for i, w := range want {
		_ = rc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, n, buf[0], len(w), w[0])
		}
	}
	st := s.SendStats()
	if st.Packets != 6 {
		t.Fatalf("%d datagrams counted, want 6", st.Packets)
	}
	if runtime.GOOS == "linux" && (!st.GSO || st.GSOSends != 2 || st.GSODatagrams != 6) {
		t.Fatalf("GSO %v: %d sends carrying %d datagrams, want 2 carrying 6 (a run of 1000s ended by 600, then the 700s)", st.GSO, st.GSOSends, st.GSODatagrams)
	}
	allocs := testing.AllocsPerRun(50, func() {
		for _, n := range sizes {
			b.Space(n + 16)
			b.Commit(n)
		}
		s.SendBatch(&b)
		for range sizes {
			_ = rc.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = rc.Read(buf)
		}
	})
	if allocs != 0 {
		t.Fatalf("a batch send allocates %.0f times", allocs)
	}
}
