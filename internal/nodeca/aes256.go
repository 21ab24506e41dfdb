package nodeca

import (
	"crypto/tls"
	_ "unsafe" // go:linkname, see below
)

// crypto/tls does not let a program choose its TLS 1.3 cipher suites, and
// a Go server picks TLS_AES_128_GCM_SHA256 whenever a client offers it.
// Node-to-node traffic must use AES-256-GCM. crypto/tls keeps its TLS 1.3
// preference list reachable by linkname on purpose (go.dev/issue/67401,
// "Do not remove or change the type signature"); this moves
// TLS_AES_256_GCM_SHA384 to the front of the list used for clients that
// prefer AES-GCM, so that a server chooses it whenever it is offered.
// The cluster listeners then refuse any client that does not offer it, or
// that prefers ChaCha20 (see checkHello), and check the result
// (VerifyConnection). For the other listeners of the process this only
// changes which AES-GCM suite is preferred.
//
//go:linkname defaultCipherSuitesTLS13 crypto/tls.defaultCipherSuitesTLS13
var defaultCipherSuitesTLS13 []uint16

func init() {
	preferAES256(defaultCipherSuitesTLS13)
}

// preferAES256 moves TLS_AES_256_GCM_SHA384 to the front of list, in
// place, keeping the order of the others.
func preferAES256(list []uint16) {
	for i, s := range list {
		if s == tls.TLS_AES_256_GCM_SHA384 {
			copy(list[1:i+1], list[:i])
			list[0] = s
			return
		}
	}
}
