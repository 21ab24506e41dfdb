package main

import (
	"net"
	"os"

	"conclave/internal/pki"
)

var lookupEnv = os.LookupEnv

// firstHost is the address printed in links when no public URL is set: a
// non-loopback IPv4 address of this machine, else 127.0.0.1.
func firstHost() string {
	for _, h := range pki.DefaultHosts() {
		if ip := net.ParseIP(h); ip != nil && !ip.IsLoopback() && ip.To4() != nil {
			return h
		}
	}
	return "127.0.0.1"
}
