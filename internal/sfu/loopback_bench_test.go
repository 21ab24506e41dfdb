//go:build linux

package sfu

import (
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackFloor measures what the kernel alone costs the sender
// per 1100-byte UDP datagram (the size of a full video packet) sent over
// loopback: the CPU time of the sending thread, which on loopback also
// delivers the datagram to the receiving socket. No RTP, no SRTP, no SFU:
// it is the floor under the server CPU per forwarded packet that
// `conclave loadtest -local` measures (docs/benchmarks.md). "write" is
// one send per datagram, as the SFU does; "gso32" hands the kernel 32
// datagrams at once with UDP segmentation offload (UDP_SEGMENT).
func BenchmarkLoopbackFloor(b *testing.B) {
	const size = 1100
	for _, bc := range []struct {
		name string
		gso  int
	}{{"write", 0}, {"gso32", 32}} {
		b.Run(bc.name, func(b *testing.B) {
			rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer rc.Close()
			_ = rc.SetReadBuffer(8 << 20)
			got := make(chan int)
			go func() {
				// The receiver drains on a thread of its own, whose time
				// is not counted.
				buf, n := make([]byte, 2048), 0
				for {
					if _, err := rc.Read(buf); err != nil {
						got <- n
						return
					}
					n++
				}
			}()
			sc, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			per := 1
			msg := make([]byte, size)
			if bc.gso > 0 {
				per = bc.gso
				msg = make([]byte, size*per)
				raw, err := sc.SyscallConn()
				if err != nil {
					b.Fatal(err)
				}
				var serr error
				if err := raw.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, size)
				}); err != nil || serr != nil {
					b.Skipf("UDP_SEGMENT: %v %v", err, serr)
				}
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start := threadCPU(b)
			b.ResetTimer()
			sent := 0
			for sent < b.N {
				if _, err := sc.Write(msg); err != nil {
					b.Fatal(err)
				}
				sent += per
				if sent%(64*per) == 0 {
					// Let the receiver keep up: a full socket drops,
					// which costs less than delivering.
					time.Sleep(50 * time.Microsecond)
				}
			}
			b.StopTimer()
			used := threadCPU(b) - start
			b.ReportMetric(float64(used.Nanoseconds())/float64(sent), "cpu-ns/packet")
			b.ReportMetric(float64(sent)*size*8/used.Seconds()/1e9, "Gbit/s/core")
			_ = rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n := <-got; n < sent*9/10 {
				b.Errorf("the receiver got %d of %d datagrams: the figure includes drops", n, sent)
			}
		})
	}
}

// threadCPU returns the CPU time of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
