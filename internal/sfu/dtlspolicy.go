package sfu

import (
	"github.com/pion/dtls/v3"
	dtlsElliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/webrtc/v4"
)

// DTLSCipherSuites are the only DTLS cipher suites the media path
// accepts: ECDHE with AES-GCM, as on the HTTPS listener (pki). Pion's
// defaults also allow ChaCha20-Poly1305 and AES-256-CBC-SHA, which are
// outside the approved set (CCN-STIC-807).
var DTLSCipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// DTLSCurves are the key exchange groups of the media path's DTLS: P-256
// and P-384 (no X25519).
var DTLSCurves = []dtlsElliptic.Curve{dtlsElliptic.P256, dtlsElliptic.P384}

// applyDTLSPolicy restricts se's DTLS handshakes to DTLSCipherSuites and
// DTLSCurves.
func applyDTLSPolicy(se *webrtc.SettingEngine) {
	se.SetDTLSCipherSuites(DTLSCipherSuites...)
	se.SetDTLSEllipticCurves(DTLSCurves...)
}
