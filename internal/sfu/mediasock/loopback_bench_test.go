//go:build linux

package mediasock

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackFloor measures what the kernel alone costs the sender
// per UDP datagram sent over loopback: the CPU time of the sending thread,
// which on loopback also delivers the datagram to the receiving socket. No
// RTP, no SRTP, no SFU: it is the floor under the server CPU per forwarded
// packet that `conclave loadtest -local` measures (docs/benchmarks.md).
//
//   - "write": one send per 1100-byte datagram (a full video packet), as
//     the SFU does;
//   - "gso32": 32 such datagrams handed to the kernel at once with UDP
//     segmentation offload (UDP_SEGMENT);
//   - "layout-write" and "layout-gso": the packets one subscriber of the
//     10 x 100 load test receives per frame interval, 6 packets of a 720p
//     frame of the top layer (1100 bytes each) and one 650-byte packet for
//     each of 5 thumbnails (a frame of the 150 kbit/s layer fits in one
//     packet), each sent alone, or the 6 of the top layer as one GSO send
//     (the best a send path that forwards by frame could do: the
//     thumbnails' single packets cannot be coalesced).
//
// With CONCLAVE_FLOOR_TO=ip:port the datagrams go to that address instead
// of a loopback receiver, and nobody checks that they arrive: pointed at
// an interface whose far end is down (docs/benchmarks.md), it measures the
// sender's side of the stack without the delivery a loopback send pays.
func BenchmarkLoopbackFloor(b *testing.B) {
	const full, thumb = 1100, 650
	cases := []struct {
		name  string
		gso   bool
		sends []int // datagram sizes per round; a GSO send takes the run of full-size ones at once
	}{
		{"write", false, []int{full}},
		{"gso32", true, repeat(full, 32)},
		{"layout-write", false, append(repeat(full, 6), repeat(thumb, 5)...)},
		{"layout-gso", true, append(repeat(full, 6), repeat(thumb, 5)...)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			dst, got := floorTarget(b)
			sc, err := net.DialUDP("udp4", nil, dst)
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			if bc.gso {
				raw, err := sc.SyscallConn()
				if err != nil {
					b.Fatal(err)
				}
				var serr error
				if err := raw.Control(func(fd uintptr) {
					// A send no longer than this is one datagram, as
					// without GSO.
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, full)
				}); err != nil || serr != nil {
					b.Fatalf("UDP_SEGMENT: %v %v", err, serr)
				}
			}
			var writes [][]byte
			for i := 0; i < len(bc.sends); {
				j := i + 1
				if bc.gso {
					for j < len(bc.sends) && bc.sends[j] == full && bc.sends[i] == full {
						j++
					}
				}
				n := 0
				for _, s := range bc.sends[i:j] {
					n += s
				}
				writes = append(writes, make([]byte, n))
				i = j
			}
			perRound, bytesPerRound := len(bc.sends), 0
			for _, s := range bc.sends {
				bytesPerRound += s
			}

			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start := threadCPU(b)
			b.ResetTimer()
			sent, rounds := 0, 0
			for sent < b.N {
				for _, w := range writes {
					if _, err := sc.Write(w); err != nil {
						b.Fatal(err)
					}
				}
				sent += perRound
				rounds++
				if sent/64 != (sent-perRound)/64 && got != nil {
					// Let the receiver keep up: a full socket drops,
					// which costs less than delivering.
					time.Sleep(50 * time.Microsecond)
				}
			}
			b.StopTimer()
			used := threadCPU(b) - start
			b.ReportMetric(float64(used.Nanoseconds())/float64(sent), "cpu-ns/packet")
			b.ReportMetric(float64(rounds*bytesPerRound)*8/used.Seconds()/1e9, "Gbit/s/core")
			if got != nil {
				if n := got(); n < sent*9/10 {
					b.Errorf("the receiver got %d of %d datagrams: the figure includes drops", n, sent)
				}
			}
		})
	}
}

// floorTarget returns where BenchmarkLoopbackFloor sends, and, for a
// loopback receiver drained on a thread of its own (whose time is not
// counted), a function that stops it and says how many datagrams it got.
func floorTarget(b *testing.B) (*net.UDPAddr, func() int) {
	if to := os.Getenv("CONCLAVE_FLOOR_TO"); to != "" {
		dst, err := net.ResolveUDPAddr("udp4", to)
		if err != nil {
			b.Fatalf("CONCLAVE_FLOOR_TO: %v", err)
		}
		return dst, nil
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rc.Close() })
	_ = rc.SetReadBuffer(8 << 20)
	done := make(chan int, 1)
	go func() {
		buf, n := make([]byte, 65536), 0
		for {
			m, err := rc.Read(buf)
			if err != nil {
				done <- n
				return
			}
			n += max(1, m/1100)
			if m%1100 != 0 && m > 1100 {
				n++ // a GSO send read as one (the last segment shorter)
			}
		}
	}()
	return rc.LocalAddr().(*net.UDPAddr), func() int {
		_ = rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		return <-done
	}
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// threadCPU returns the CPU time of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
