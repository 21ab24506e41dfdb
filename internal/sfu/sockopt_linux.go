package sfu

import (
	"net"
	"syscall"
	"time"
	"unsafe"
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
