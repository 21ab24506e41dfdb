package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/conn"
)

type recordingPubEvents struct {
	mu     sync.Mutex
	added  []*UpTrack
	layers [][]bool
}

func (e *recordingPubEvents) TrackAdded(t conn.UpTrack) {
	e.mu.Lock()
	e.added = append(e.added, t.(*UpTrack))
	e.mu.Unlock()
}
func (e *recordingPubEvents) TrackRemoved(conn.UpTrack) {}
func (e *recordingPubEvents) ConnectionState(string)    {}
func (e *recordingPubEvents) LayersNeeded(_ conn.UpTrack, a []bool) {
	e.mu.Lock()
	e.layers = append(e.layers, a)
	e.mu.Unlock()
}

// TestSimulcastReceive connects a Pion peer that sends three RID layers to
// a Publisher and checks that they form one up track with three layers,
// ordered as in the offer's a=simulcast line, each measured on its own.
func TestSimulcastReceive(t *testing.T) {
	e, err := NewEngine(Config{UDPAddr: "127.0.0.1:0", IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ev := &recordingPubEvents{}
	pub, err := e.newPublisher("alice", ev)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
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
	client, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "alice", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	sender, err := client.AddTrack(tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks[1:] {
		if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(client)
	if err := client.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	answer, err := pub.HandleOffer(client.LocalDescription().SDP, map[string]conn.Source{"0": conn.Camera})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}

	// Pion does not add the mid and rid extensions by itself.
	var midID, ridID uint8
	for _, x := range sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case "urn:ietf:params:rtp-hdrext:sdes:mid":
			midID = uint8(x.ID)
		case "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":
			ridID = uint8(x.ID)
		}
	}
	// Each layer sends key frames of its own size, layer i at 160<<i.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		seq := uint16(0)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			seq++
			for i, tr := range tracks {
				w, h := 160<<i, 90<<i
				payload := []byte{0x90, 0x80, byte(seq & 0x7f), 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8)}
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 1800, Marker: true}, Payload: payload}
				_ = pkt.Header.SetExtension(midID, []byte("0"))
				_ = pkt.Header.SetExtension(ridID, []byte(tr.RID()))
				_ = tr.WriteRTP(pkt)
			}
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		ev.mu.Lock()
		n := len(ev.added)
		ev.mu.Unlock()
		var up *UpTrack
		if n > 0 {
			up = ev.added[0]
		}
		if up != nil && up.Layers() == 3 && up.stats[2].width.Load() != 0 && up.stats[0].width.Load() != 0 && up.stats[1].width.Load() != 0 {
			if n != 1 {
				t.Fatalf("%d tracks added, want one with three layers", n)
			}
			for i := 0; i < 3; i++ {
				if w, h := up.layerSize(i); w != 160<<i || h != 90<<i {
					t.Errorf("layer %d is %dx%d", i, w, h)
				}
				if up.layers[i].Load().rid != []string{"q", "h", "f"}[i] {
					t.Errorf("layer %d has rid %q", i, up.layers[i].Load().rid)
				}
			}
			if got := up.layerForSize(320, 180); got != 1 {
				t.Errorf("layer for 320x180 = %d", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no three-layer track: %d tracks added", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A lower simulcast layer keeps fewer packets for retransmission: half per
// step down from the top, never under minCacheSize.
func TestCacheSize(t *testing.T) {
	for _, c := range []struct{ idx, layers, want int }{
		{0, 0, videoCacheSize}, // one layer
		{0, 1, videoCacheSize},
		{2, 3, videoCacheSize}, // f
		{1, 3, videoCacheSize / 2},
		{0, 3, videoCacheSize / 4},
		{1, 2, videoCacheSize},
		{0, 2, videoCacheSize / 2},
		{0, 4, minCacheSize},
	} {
		if got := cacheSize(c.idx, c.layers); got != c.want {
			t.Errorf("cacheSize(%d, %d) = %d, want %d", c.idx, c.layers, got, c.want)
		}
	}
}
