//go:build !linux

package sfu

import (
	"errors"
	"net"
)

// enableTimestamps: receive timestamps are read only on Linux; elsewhere
// the server delay is not measured.
func enableTimestamps(*net.UDPConn) error {
	return errors.New("receive timestamps are read only on Linux")
}

func kernelTimestamp([]byte) (int64, bool) { return 0, false }

// socketBuffers: the sizes the kernel granted are checked on Linux only.
func socketBuffers(*net.UDPConn) (rcv, snd int, ok bool) { return 0, 0, false }
