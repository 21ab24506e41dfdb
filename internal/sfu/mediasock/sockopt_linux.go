package mediasock

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enableTimestamps asks the kernel to attach its receive time to every
// datagram read from c (SO_TIMESTAMPNS).
func enableTimestamps(c *net.UDPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	cerr := raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// socketBuffers reads the kernel's receive and send buffer sizes of c
// (SO_RCVBUF, SO_SNDBUF: twice what was asked for, on Linux).
func socketBuffers(c *net.UDPConn) (rcv, snd int, ok bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var rerr, serr error
	cerr := raw.Control(func(fd uintptr) {
		rcv, rerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return rcv, snd, cerr == nil && rerr == nil && serr == nil
}

// kernelTimestamp finds the SCM_TIMESTAMPNS control message (a struct
// timespec) in oob and returns it in Unix nanoseconds. It allocates
// nothing.
func kernelTimestamp(oob []byte) (int64, bool) {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	const align = int(unsafe.Sizeof(uintptr(0)))
	const size = int(unsafe.Sizeof(syscall.Timespec{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+size {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[hdr]))
			return int64(ts.Sec)*int64(time.Second) + int64(ts.Nsec), true
		}
		next := (l + align - 1) &^ (align - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0, false
}

// gsoSupported reports whether the kernel takes UDP generic segmentation
// offload on c (UDP_SEGMENT, Linux 4.18 and later).
func gsoSupported(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		_, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return gerr == nil
}

// writeSegments sends b to addr as datagrams of segment bytes, the last
// possibly shorter, in one sendmsg with a UDP_SEGMENT control message,
// built in oob (reused; returned).
func writeSegments(c *net.UDPConn, b []byte, segment int, addr netip.AddrPort, oob []byte) ([]byte, error) {
	space := unix.CmsgSpace(2)
	if len(oob) != space {
		oob = make([]byte, space)
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(segment)
	_, _, err := c.WriteMsgUDPAddrPort(b, oob, addr)
	return oob, err
}

// gsoRefused tells an error of a GSO send that means the route does not
// take it (EIO: no checksum offload, or IPsec; EINVAL, EOPNOTSUPP) from
// one of the network.
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}
