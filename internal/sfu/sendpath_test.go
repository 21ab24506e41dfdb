package sfu

import (
	"bytes"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"conclave/internal/conn"
	"conclave/internal/sfu/mediasock"
)

type offerEvents struct{ offers chan conn.Offer }

func (e *offerEvents) SendOffer(o conn.Offer) { e.offers <- o }
func (e *offerEvents) ConnectionState(string) {}

// loopbackClient is a Pion peer connection on loopback with the default
// interceptors (NACK, reports, transport-cc feedback), as a native client
// has them.
func loopbackClient(t *testing.T) *webrtc.PeerConnection {
	return loopbackClientReplay(t, true)
}

// loopbackClientReplay is loopbackClient, with SRTP replay protection
// off when !replay: the test may then ask for a packet it received (a
// browser only asks for those it did not, which its replay window lets
// through).
func loopbackClientReplay(t *testing.T, replay bool) *webrtc.PeerConnection {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.DisableSRTPReplayProtection(!replay)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// vp8Frame is a one-packet VP8 frame: a key frame of 320x180 when key.
func vp8Frame(n int, key bool) []byte {
	if key {
		return []byte{0x90, 0x80, byte(n & 0x7f), 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00, byte(n)}
	}
	return []byte{0x90, 0x80, byte(n & 0x7f), 0x01, 0x02, 0x03, byte(n), byte(n >> 8)}
}

// TestOwnSendPath: a subscriber connected over UDP is moved onto the
// server's own send path, and a Pion client, with its own SRTP session
// keyed by the DTLS handshake, receives there what the publisher sent:
// every payload intact, transport-wide sequence numbers consecutive.
// Its transport-cc feedback reaches the subscriber's estimator, a NACK
// brings the packet again, a PLI reaches the publisher as a key frame
// request, and sender reports come for the track.
func TestOwnSendPath(t *testing.T) {
	e, err := NewEngine(Config{UDPAddr: "127.0.0.1:0", IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	// The publisher: one VP8 track, a key frame every 10 frames.
	ev := &recordingPubEvents{}
	pub, err := e.newPublisher("alice", ev)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	alice := loopbackClient(t)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "alice")
	if err != nil {
		t.Fatal(err)
	}
	aliceSender, err := alice.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	var plis atomic.Int32
	go func() {
		for {
			pkts, _, err := aliceSender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					plis.Add(1)
				}
			}
		}
	}()
	offer, _ := alice.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(alice)
	if err := alice.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	answer, err := pub.HandleOffer(alice.LocalDescription().SDP, map[string]conn.Source{"0": conn.Camera})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	sent := map[string]bool{} // payloads Alice sent
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p := vp8Frame(n, n%10 == 1)
			mu.Lock()
			sent[string(p)] = true
			mu.Unlock()
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: uint32(n) * 3000, Marker: true}, Payload: p})
		}
	}()
	var up *UpTrack
	waitFor(t, "the up track", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if len(ev.added) > 0 {
			up = ev.added[0]
		}
		return up != nil
	})

	// The subscriber: Bob.
	bob := loopbackClientReplay(t, false)
	oe := &offerEvents{offers: make(chan conn.Offer, 4)}
	sub, err := e.newSubscriber(oe)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.AddTrack(up, conn.TrackOptions{Stream: "alice"}); err != nil {
		t.Fatal(err)
	}
	var remote atomic.Pointer[webrtc.TrackRemote]
	var bobReceiver atomic.Pointer[webrtc.RTPReceiver]
	bob.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		bobReceiver.Store(r)
		remote.Store(tr)
	})
	o := <-oe.offers
	if err := bob.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, _ := bob.CreateAnswer(nil)
	gathered = webrtc.GatheringCompletePromise(bob)
	if err := bob.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := sub.HandleAnswer(bob.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the own send path", func() bool { return sub.own.Load() != nil })
	waitFor(t, "Bob's track", func() bool { return remote.Load() != nil })
	tr := remote.Load()

	// Payloads intact, transport-wide numbers consecutive.
	var twccID uint8
	for _, x := range bobReceiver.Load().GetParameters().HeaderExtensions {
		if x.URI == transportCCURI {
			twccID = uint8(x.ID)
		}
	}
	if twccID == 0 {
		t.Fatal("transport-cc was not negotiated")
	}
	var last uint16
	var got []*rtp.Packet
	for len(got) < 40 {
		_ = tr.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, _, err := tr.ReadRTP()
		if err != nil {
			t.Fatalf("Bob reads after %d packets: %v", len(got), err)
		}
		mu.Lock()
		ok := sent[string(p.Payload)]
		mu.Unlock()
		if !ok {
			t.Fatalf("Bob received a payload Alice never sent: %x", p.Payload)
		}
		ext := p.GetExtension(twccID)
		if len(ext) != 2 {
			t.Fatalf("packet without a transport-wide sequence number: %+v", p.Header)
		}
		n := uint16(ext[0])<<8 | uint16(ext[1])
		if len(got) > 0 && n != last+1 {
			t.Fatalf("transport-wide sequence %d after %d", n, last)
		}
		last = n
		got = append(got, p)
	}

	// Feedback reaches the estimator.
	p := sub.own.Load()
	waitFor(t, "transport-cc feedback in the estimator", func() bool {
		p.est.mu.Lock()
		defer p.est.mu.Unlock()
		return p.est.lastUpdate != 0
	})

	// A NACK brings the packet again: Bob asks for one he had.
	want := got[len(got)-3]
	if err := bob.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: uint32(tr.SSRC()), Nacks: []rtcp.NackPair{{PacketID: want.SequenceNumber}}}}); err != nil {
		t.Fatal(err)
	}
	resent := false
	for deadline := time.Now().Add(5 * time.Second); !resent && time.Now().Before(deadline); {
		_ = tr.SetReadDeadline(time.Now().Add(time.Second))
		q, _, err := tr.ReadRTP()
		if err != nil {
			continue
		}
		resent = q.SequenceNumber == want.SequenceNumber && bytes.Equal(q.Payload, want.Payload)
	}
	if !resent {
		t.Fatalf("no retransmission of packet %d after a NACK", want.SequenceNumber)
	}

	// A PLI reaches the publisher.
	before := plis.Load()
	if err := bob.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Bob's PLI at Alice", func() bool { return plis.Load() > before })

	// Sender reports for the track.
	var sr *rtcp.SenderReport
	go func() {
		for {
			_ = tr.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := tr.ReadRTP(); err != nil && !isTimeout(err) {
				return
			}
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); sr == nil && time.Now().Before(deadline); {
		pkts, _, err := bobReceiver.Load().ReadRTCP()
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pkts {
			if r, ok := q.(*rtcp.SenderReport); ok && r.SSRC == uint32(tr.SSRC()) && r.PacketCount > 0 {
				sr = r
			}
		}
	}
	if sr == nil {
		t.Fatal("no sender report for the track")
	}
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	t, ok := err.(timeout)
	return ok && t.Timeout()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type discardSock struct{ n atomic.Int64 }

func (d *discardSock) WriteToAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	d.n.Add(1)
	return len(b), nil
}

// BenchmarkOwnSend: one packet through the own send path: transport-wide
// number, marshalling, SRTP (AES-GCM) and the hand-over to the socket.
// It must not allocate.
func BenchmarkOwnSend(b *testing.B) {
	key := make([]byte, 16)
	salt := make([]byte, 12)
	out, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		b.Fatal(err)
	}
	sock := &discardSock{}
	p := newSendPath(sock, sendPathSetup{out: out, addr: netip.MustParseAddrPort("127.0.0.1:9")}, &probeMeter{})
	d := &DownTrack{}
	d.munger.clockRate = 90000
	payload := make([]byte, 1100)
	var ext [2]rtp.Extension
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for i := 0; b.Loop(); i++ {
		h.SequenceNumber = uint16(i)
		h.Timestamp = uint32(i) * 3000
		h.Extension = false
		h.Extensions = ext[:0]
		p.writeRTP(d, 3, &h, payload, int64(i), nil)
	}
	if sock.n.Load() == 0 {
		b.Fatal("nothing sent")
	}
}

// BenchmarkOwnSendBatch: the same into a frame's batch (encrypted in
// place, six packets a share), as the forwarding loop does; the batch is
// emptied, not sent.
func BenchmarkOwnSendBatch(b *testing.B) {
	key := make([]byte, 16)
	salt := make([]byte, 12)
	out, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		b.Fatal(err)
	}
	p := newSendPath(&discardSock{}, sendPathSetup{out: out, addr: netip.MustParseAddrPort("127.0.0.1:9")}, &probeMeter{})
	d := &DownTrack{}
	payload := make([]byte, 1100)
	var ext [2]rtp.Extension
	var batch mediasock.Batch
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for i := 0; b.Loop(); i++ {
		h.SequenceNumber = uint16(i)
		h.Timestamp = uint32(i/6) * 3000
		h.Extension = false
		h.Extensions = ext[:0]
		p.writeRTP(d, 3, &h, payload, int64(i), &batch)
		if batch.Len() == 6 {
			batch.Reset(batch.Addr)
		}
	}
}
