package sfu

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsElliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/webrtc/v4"
)

// dtlsPeer is a loopback-only peer connection API.
func dtlsPeer(t *testing.T, tune func(*webrtc.SettingEngine)) *webrtc.PeerConnection {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	tune(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// handshake connects an offerer tuned by client to an answerer under the
// media path's DTLS policy, and returns the offerer's final state.
func handshake(t *testing.T, client func(*webrtc.SettingEngine)) webrtc.PeerConnectionState {
	t.Helper()
	offer := dtlsPeer(t, client)
	answer := dtlsPeer(t, applyDTLSPolicy)
	final := make(chan webrtc.PeerConnectionState, 4)
	offer.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected || s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			final <- s
		}
	})
	if _, err := offer.CreateDataChannel("probe", nil); err != nil {
		t.Fatal(err)
	}
	o, _ := offer.CreateOffer(nil)
	done := webrtc.GatheringCompletePromise(offer)
	offer.SetLocalDescription(o)
	<-done
	if err := answer.SetRemoteDescription(*offer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	a, _ := answer.CreateAnswer(nil)
	done = webrtc.GatheringCompletePromise(answer)
	answer.SetLocalDescription(a)
	<-done
	if err := offer.SetRemoteDescription(*answer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-final:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no DTLS outcome in 30 s")
	}
	return 0
}

// TestHardening16MediaDTLS (docs/hardening.md, finding 16, media part):
// the media path's DTLS refuses ChaCha20, AES-CBC and X25519, and accepts
// ECDHE with AES-GCM on P-256.
func TestHardening16MediaDTLS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		suites []dtls.CipherSuiteID
		curves []dtlsElliptic.Curve
		want   webrtc.PeerConnectionState
	}{
		{"ChaCha20-Poly1305 only", []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, nil, webrtc.PeerConnectionStateFailed},
		{"AES-256-CBC-SHA only", []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, nil, webrtc.PeerConnectionStateFailed},
		{"X25519 only", []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, []dtlsElliptic.Curve{dtlsElliptic.X25519}, webrtc.PeerConnectionStateFailed},
		{"ECDHE AES-128-GCM on P-256", []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, []dtlsElliptic.Curve{dtlsElliptic.P256}, webrtc.PeerConnectionStateConnected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := handshake(t, func(se *webrtc.SettingEngine) {
				se.SetDTLSCipherSuites(tc.suites...)
				if tc.curves != nil {
					se.SetDTLSEllipticCurves(tc.curves...)
				}
			})
			// A refused handshake ends the connection as failed or, when
			// Pion tears it down first, closed: either way it never connects.
			if tc.want == webrtc.PeerConnectionStateFailed && got == webrtc.PeerConnectionStateClosed {
				got = webrtc.PeerConnectionStateFailed
			}
			if got != tc.want {
				t.Fatalf("offer with %s: connection %s, want %s", tc.name, got, tc.want)
			}
		})
	}
}
