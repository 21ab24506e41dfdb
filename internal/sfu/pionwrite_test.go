package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/conn"
	"conclave/internal/testutil/wait"
)

// offerCatcher is a subscriber's events: it keeps the offers.
type offerCatcher struct{ offers chan conn.Offer }

func (o offerCatcher) SendOffer(x conn.Offer) { o.offers <- x }
func (o offerCatcher) ConnectionState(string) {}

// TestPionWritesSynchronously checks the contract the media socket's
// batching rests on (mediasock): a down track's write goes through Pion's
// whole sending stack (interceptors, SRTP, ICE) to the media socket on
// the calling goroutine, before the write returns. If Pion ever queued a
// write for another goroutine, the datagrams of a held socket would leave
// one by one after the release, and batching would silently stop. Each
// write below must add an encrypted datagram to the held socket's queue by
// the time it returns, and the client must receive them all.
func TestPionWritesSynchronously(t *testing.T) {
	e, err := NewEngine(Config{UDPAddr: "127.0.0.1:0", IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	events := offerCatcher{offers: make(chan conn.Offer, 4)}
	sub, err := e.newSubscriber(events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	u := testTrack(1)
	if err := sub.AddTrack(u, conn.TrackOptions{Stream: "alice"}); err != nil {
		t.Fatal(err)
	}

	// A client on loopback answers the subscriber's offer.
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	client, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	received := make(chan uint16, 64)
	client.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			received <- p.SequenceNumber
		}
	})
	var offer conn.Offer
	select {
	case offer = <-events.offers:
	case <-time.After(10 * time.Second):
		t.Fatal("no offer from the subscriber")
	}
	if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		t.Fatal(err)
	}
	answer, err := client.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(client)
	if err := client.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := sub.HandleAnswer(client.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	d := sub.downTracks()[0]
	wait.For(t, "the subscriber's connection and its track's binding", 15*time.Second, func() bool {
		return sub.pc.ConnectionState() == webrtc.PeerConnectionStateConnected && d.binding.Load() != nil
	})

	payload := make([]byte, 400)
	payload[0] = 0x10 // VP8 descriptor: start of partition 0
	info := &packetInfo{layer: 0, keyFrame: true, pictureStart: true, marker: true, now: time.Now().UnixNano()}
	const n = 20
	for i := range n {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(1000 + i), Timestamp: uint32(3000 * i), SSRC: 1000, Marker: true}, Payload: payload}
		info.now = time.Now().UnixNano()
		e.sock.Hold()
		n0, b0 := e.sock.Queued()
		d.writeRTP(p, info)
		n1, b1 := e.sock.Queued()
		e.sock.Release()
		if n1 <= n0 || b1-b0 < len(payload) {
			t.Fatalf("write %d: the held socket's queue went from %d datagrams (%d bytes) to %d (%d) while the write ran: Pion did not write synchronously", i, n0, b0, n1, b1)
		}
	}
	// The first packet starts the down track's numbering where the
	// source's is: the client gets 1000 to 1019, each once.
	got := map[uint16]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case seq := <-received:
			if seq < 1000 || seq >= 1000+n || got[seq] {
				t.Fatalf("the client received sequence number %d (had %v)", seq, got)
			}
			got[seq] = true
		case <-deadline:
			t.Fatalf("the client received %d of the %d packets", len(got), n)
		}
	}
}
