package cascade

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// Capture writes what other nodes relay to this one — their RTP packets
// as received, payloads end-to-end encrypted — as a pcap file to w, until
// ctx ends or max packets are written: an operator (or a test) sees for
// itself that a node forwards what it cannot read. Each packet is
// wrapped in an IPv4 and UDP header from the other node's link address
// to this one's (LINKTYPE_RAW), so that tools that read pcap decode it as
// RTP. Packets the writer is too slow for are dropped.
func (m *Mesh) Capture(ctx context.Context, w io.Writer, max int) (int, error) {
	c := &capture{ch: make(chan captured, 4096)}
	m.capMu.Lock()
	var list []*capture
	if old := m.captures.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, c)
	m.captures.Store(&list)
	m.capMu.Unlock()
	defer func() {
		m.capMu.Lock()
		var rest []*capture
		for _, x := range *m.captures.Load() {
			if x != c {
				rest = append(rest, x)
			}
		}
		m.captures.Store(&rest)
		m.capMu.Unlock()
	}()
	if _, err := w.Write(pcapHeader()); err != nil {
		return 0, err
	}
	n := 0
	for n < max {
		select {
		case <-ctx.Done():
			return n, nil
		case p := <-c.ch:
			if _, err := w.Write(pcapRecord(p)); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// capture is one Capture in progress.
type capture struct{ ch chan captured }

// captured is one relayed packet.
type captured struct {
	at       time.Time
	src, dst *net.TCPAddr
	raw      []byte
}

// captureRelayed hands a received packet to the captures in progress.
func (m *Mesh) captureRelayed(l *link, raw []byte) {
	list := m.captures.Load()
	if list == nil || len(*list) == 0 {
		return
	}
	caps := *list
	src, _ := l.c.RemoteAddr().(*net.TCPAddr)
	dst, _ := l.c.LocalAddr().(*net.TCPAddr)
	p := captured{at: time.Now(), src: src, dst: dst, raw: append([]byte(nil), raw...)}
	for _, c := range caps {
		select {
		case c.ch <- p:
		default:
		}
	}
}

// pcapHeader is a pcap file header: microsecond times, LINKTYPE_RAW.
func pcapHeader() []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(b[4:], 2)
	binary.LittleEndian.PutUint16(b[6:], 4)
	binary.LittleEndian.PutUint32(b[16:], 65535)
	binary.LittleEndian.PutUint32(b[20:], 101) // LINKTYPE_RAW
	return b
}

// pcapRecord wraps one packet in IPv4 and UDP headers and a pcap record
// header.
func pcapRecord(p captured) []byte {
	n := 20 + 8 + len(p.raw)
	b := make([]byte, 16+n)
	binary.LittleEndian.PutUint32(b[0:], uint32(p.at.Unix()))
	binary.LittleEndian.PutUint32(b[4:], uint32(p.at.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(b[8:], uint32(n))
	binary.LittleEndian.PutUint32(b[12:], uint32(n))
	ip := b[16:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n))
	ip[8] = 64
	ip[9] = 17 // UDP
	srcIP, dstIP := net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 1)
	srcPort, dstPort := 0, 0
	if p.src != nil {
		if v4 := p.src.IP.To4(); v4 != nil {
			srcIP = v4
		}
		srcPort = p.src.Port
	}
	if p.dst != nil {
		if v4 := p.dst.IP.To4(); v4 != nil {
			dstIP = v4
		}
		dstPort = p.dst.Port
	}
	copy(ip[12:16], srcIP.To4())
	copy(ip[16:20], dstIP.To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], uint16(srcPort))
	binary.BigEndian.PutUint16(udp[2:], uint16(dstPort))
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(p.raw)))
	copy(udp[8:], p.raw)
	return b
}
