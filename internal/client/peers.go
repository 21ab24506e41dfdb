package client

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"conclave/internal/pionlog"
	"conclave/internal/signal"
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "transport-cc"},
}

// codecs are those of docs/protocol.md, with the browser's payload types.
var codecs = map[Codec]webrtc.RTPCodecParameters{
	CodecOpus: {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: []webrtc.RTCPFeedback{{Type: "transport-cc"}}}, PayloadType: 111},
	CodecVP8: {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
		RTCPFeedback: videoFeedback}, PayloadType: 96},
	CodecVP9: {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000,
		SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98},
}

// newAPI prepares the WebRTC stack of a session: the protocol's codecs,
// NACK in both directions, RTCP reports, transport-wide sequence numbers.
// Loopback candidates are gathered only for a server on this machine.
func newAPI(log *slog.Logger, includeLoopback bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range []Codec{CodecOpus, CodecVP8, CodecVP9} {
		if err := me.RegisterCodec(codecs[c], webrtc.RTPCodecType(kindOf(c))); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c, err)
		}
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: "urn:ietf:params:rtp-hdrext:sdes:mid"}, k); err != nil {
			return nil, fmt.Errorf("register mid extension: %w", err)
		}
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, reg); err != nil {
		return nil, fmt.Errorf("configure NACK: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, fmt.Errorf("configure RTCP reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		return nil, fmt.Errorf("configure transport-cc: %w", err)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.Factory(log, slog.LevelInfo)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(includeLoopback)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

func kindOf(c Codec) webrtc.RTPCodecType {
	if c == CodecOpus {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// peers are the two peer connections of one participant (docs/protocol.md,
// "Two peer connections"); a fresh join replaces them.
type peers struct {
	ctx    context.Context // canceled at teardown: stops the media goroutines
	cancel context.CancelFunc
	pub    *webrtc.PeerConnection
	sub    *webrtc.PeerConnection

	published map[string]*publishedTrack // by source
	mids      map[string]*midSlot        // sub transceivers, by mid

	pendingPublish  *signal.Message // sent, not answered
	publishWanted   bool            // another negotiation is needed after it
	iceRestart      bool
	publishFailures int
}

func (s *Session) setupPeers(servers []signal.ICEServer) error {
	var ice []webrtc.ICEServer
	for _, v := range servers {
		ice = append(ice, webrtc.ICEServer{URLs: v.URLs, Username: v.Username, Credential: v.Credential})
	}
	pub, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: ice,
		BundlePolicy: webrtc.BundlePolicyMaxBundle, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		return fmt.Errorf("create publish connection: %w", err)
	}
	// The server's offers decide the bundling of sub, as in the browser.
	sub, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: ice, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		pub.Close()
		return fmt.Errorf("create subscribe connection: %w", err)
	}
	p := &peers{pub: pub, sub: sub, published: map[string]*publishedTrack{}, mids: map[string]*midSlot{}}
	p.ctx, p.cancel = context.WithCancel(s.ctx)
	s.peers = p

	for name, pc := range map[string]*webrtc.PeerConnection{signal.PCPublish: pub, signal.PCSubscribe: sub} {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c == nil {
				return // end of gathering; the server needs no notice
			}
			init := c.ToJSON()
			s.post(func() {
				if s.peers == p {
					s.send(&signal.Message{Type: signal.TypeCandidate, PC: name, Candidate: &signal.Candidate{
						Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex,
						UsernameFragment: init.UsernameFragment}})
				}
			})
		})
		pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
			s.post(func() { s.onConnectionState(p, name, st) })
		})
	}
	sub.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		s.post(func() { s.onTrack(p, remote, receiver) })
	})

	self := s.Self().ID
	for source, src := range map[string]FrameSource{signal.SourceCamera: s.opts.Camera, signal.SourceMicrophone: s.opts.Microphone} {
		if src == nil {
			continue
		}
		t, err := s.addPublished(p, source, src, self)
		if err != nil {
			return err
		}
		p.published[source] = t
	}
	s.mu.Lock()
	s.sent = make([]*publishedTrack, 0, len(p.published))
	for _, t := range p.published {
		s.sent = append(s.sent, t)
	}
	s.mu.Unlock()
	s.requestPublish()
	return nil
}

// teardownPeers closes the peer connections; the media goroutines stop.
func (s *Session) teardownPeers() {
	p := s.peers
	if p == nil {
		return
	}
	s.peers = nil
	for _, n := range []string{signal.PCPublish, signal.PCSubscribe, "publish-retry"} {
		s.stopTimer(n)
	}
	p.cancel()
	for _, slot := range p.mids {
		if rt := slot.owner.Swap(nil); rt != nil {
			s.stopTrack(rt)
		}
	}
	if err := p.pub.Close(); err != nil {
		s.log.Debug("close publish connection", "err", err)
	}
	if err := p.sub.Close(); err != nil {
		s.log.Debug("close subscribe connection", "err", err)
	}
}

// requestPublish negotiates pub: an offer with every published
// transceiver, sent as publish. Requests made while an offer is
// outstanding are coalesced into one more offer.
func (s *Session) requestPublish() {
	p := s.peers
	if p == nil || len(p.published) == 0 {
		return // a viewer publishes nothing
	}
	if p.pendingPublish != nil {
		p.publishWanted = true
		return
	}
	p.publishWanted = false
	offer, err := p.pub.CreateOffer(&webrtc.OfferOptions{ICERestart: p.iceRestart})
	if err != nil {
		s.onPublishFailed(fmt.Errorf("create publish offer: %w", err))
		return
	}
	p.iceRestart = false
	if err := p.pub.SetLocalDescription(offer); err != nil {
		s.onPublishFailed(fmt.Errorf("apply publish offer: %w", err))
		return
	}
	tracks := map[string]signal.TrackInfo{}
	for source, t := range p.published {
		if mid := t.transceiver.Mid(); mid != "" {
			tracks[mid] = signal.TrackInfo{Source: source}
		}
	}
	s.publishSeq++
	m := &signal.Message{Type: signal.TypePublish, ID: fmt.Sprintf("publish-%d", s.publishSeq),
		SDP: p.pub.LocalDescription().SDP, Tracks: tracks}
	p.pendingPublish = m
	s.send(m)
}

func (s *Session) onPublishAnswer(m *signal.Message) {
	p := s.peers
	if p == nil || p.pendingPublish == nil {
		s.log.Warn("ignoring a publish-answer with no offer outstanding")
		return
	}
	p.pendingPublish = nil
	if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
		s.onPublishFailed(fmt.Errorf("apply publish answer: %w", err))
		return
	}
	p.publishFailures = 0
	if p.publishWanted {
		s.requestPublish()
	}
}

// onPublishFailed rolls the offer back and retries a few times, waiting
// longer each time, like the browser.
func (s *Session) onPublishFailed(err error) {
	p := s.peers
	if p == nil {
		return
	}
	p.pendingPublish = nil
	if p.pub.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		_ = p.pub.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
	}
	p.publishFailures++
	if p.publishFailures > publishRetries {
		s.log.Error("publishing failed; the others will not receive this participant's media", "err", err)
		return
	}
	s.log.Warn("publishing failed; retrying", "err", err, "attempt", p.publishFailures)
	s.timer("publish-retry", time.Duration(p.publishFailures)*time.Second, s.requestPublish)
}

func (s *Session) onSubscribeOffer(m *signal.Message) {
	p := s.peers
	if p == nil {
		return
	}
	s.applyTracks(p, m.Tracks)
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		s.log.Warn("cannot apply the subscribe offer", "err", err)
		return
	}
	answer, err := p.sub.CreateAnswer(nil)
	if err != nil {
		s.log.Warn("cannot answer the subscribe offer", "err", err)
		return
	}
	if err := p.sub.SetLocalDescription(answer); err != nil {
		s.log.Warn("cannot apply the subscribe answer", "err", err)
		return
	}
	s.send(&signal.Message{Type: signal.TypeSubscribeAnswer, SDP: p.sub.LocalDescription().SDP})
}

func (s *Session) onCandidate(m *signal.Message) {
	p := s.peers
	if p == nil || m.Candidate == nil || m.Candidate.Candidate == "" {
		return
	}
	pc := p.sub
	if m.PC == signal.PCPublish {
		pc = p.pub
	}
	c := m.Candidate
	if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid,
		SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}); err != nil {
		s.log.Debug("ignoring a server candidate", "pc", m.PC, "err", err)
	}
}

// onConnectionState restarts ICE on a failed connection and joins afresh
// if it does not recover in time (docs/protocol.md, Reconnection).
func (s *Session) onConnectionState(p *peers, name string, st webrtc.PeerConnectionState) {
	if p != s.peers {
		return
	}
	s.log.Debug("peer connection state", "pc", name, "state", st.String())
	switch st {
	case webrtc.PeerConnectionStateFailed:
		if _, recovering := s.timers[name]; recovering {
			return
		}
		if name == signal.PCPublish {
			p.iceRestart = true
			s.requestPublish()
		} else {
			s.send(&signal.Message{Type: signal.TypeRestartICE, PC: signal.PCSubscribe})
		}
		s.timer(name, iceRecovery, s.rejoin)
	case webrtc.PeerConnectionStateConnected:
		s.stopTimer(name)
	}
}
