package sipedge

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRelayForwardsOnlyFromTheSignallingAddress: a datagram from the
// address an endpoint signals from reaches the other endpoint; one from
// anywhere else (a stranger who found the port) goes nowhere.
func TestRelayForwardsOnlyFromTheSignallingAddress(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	callee := netip.MustParseAddr("127.0.0.3")
	var tapped int
	rs, err := newRelaySession(lo, PortRange{}, lo, callee, func(Direction, bool, []byte) { tapped++ })
	if err != nil {
		t.Fatal(err)
	}
	defer rs.close()
	// The callee's phone, at its own address.
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IP(callee.AsSlice())})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	rs.expect(1, 0, phone.LocalAddr().(*net.UDPAddr).AddrPort())
	caller, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IP(lo.AsSlice())})
	defer caller.Close()
	stranger, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IP(netip.MustParseAddr("127.0.0.9").AsSlice())})
	defer stranger.Close()
	legA := &net.UDPAddr{IP: net.IP(lo.AsSlice()), Port: rs.port(0, 0)}

	stranger.WriteToUDP([]byte("injected"), legA)
	caller.WriteToUDP([]byte("from the caller"), legA)
	buf := make([]byte, 100)
	phone.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := phone.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("nothing reached the callee: %v", err)
	}
	if got := string(buf[:n]); got != "from the caller" {
		t.Fatalf("the callee received %q", got)
	}
	// The stranger's datagram was sent first; had it passed, it would have
	// been read first. Nothing else is waiting either.
	phone.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := phone.ReadFromUDP(buf); err == nil {
		t.Fatalf("the callee also received %q", buf[:n])
	}
	if p, _ := rs.counts(); p[0] != 1 {
		t.Errorf("relay counted %d datagrams from the caller", p[0])
	}
}
