//go:build !linux

package mediasock

import (
	"errors"
	"net"
	"net/netip"
)

// enableTimestamps: receive timestamps are read only on Linux; elsewhere
// the server delay is not measured.
func enableTimestamps(*net.UDPConn) error {
	return errors.New("receive timestamps are read only on Linux")
}

func kernelTimestamp([]byte) (int64, bool) { return 0, false }

// socketBuffers: the sizes the kernel granted are checked on Linux only.
func socketBuffers(*net.UDPConn) (rcv, snd int, ok bool) { return 0, 0, false }

// gsoSupported: UDP segmentation offload is used on Linux only.
func gsoSupported(*net.UDPConn) bool { return false }

func writeSegments(*net.UDPConn, []byte, int, netip.AddrPort, []byte) ([]byte, error) {
	return nil, errors.New("UDP segmentation offload is used only on Linux")
}

func gsoRefused(error) bool { return true }
