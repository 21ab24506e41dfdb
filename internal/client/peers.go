package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
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
// NACK in both directions, RTCP reports, transport-wide sequence numbers
// and feedback.
// Loopback candidates are gathered only for a server on this machine.
// TURN over TCP and TLS goes through dialer.
func newAPI(log *slog.Logger, includeLoopback bool, dialer *turnDialer) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range []Codec{CodecOpus, CodecVP8, CodecVP9} {
		if err := me.RegisterCodec(codecs[c], webrtc.RTPCodecType(kindOf(c))); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c, err)
		}
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, k); err != nil {
			return nil, fmt.Errorf("register mid extension: %w", err)
		}
	}
	// A simulcast camera names its encodings with RIDs (RFC 8852).
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESRTPStreamIDURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register rid extension: %w", err)
	}
	lf := pionlog.Factory(log, slog.LevelInfo)
	reg := &interceptor.Registry{}
	reg.Add(nackLimitFactory{}) // before the NACK responder: it trims what the responder reads
	// A lost packet is asked for at most maxNacks times, as libwebrtc does
	// (kMaxNackRetries): Pion's default asks every 100 ms for as long as
	// it remembers the packet, which, from many subscribers of one lost
	// packet, floods the server with NACKs.
	if err := webrtc.ConfigureNackWithOptions(me, reg,
		[]nack.GeneratorOption{nack.GeneratorMaxNacksPerPacket(maxNacks), nack.WithGeneratorLoggerFactory(lf)},
		nack.WithResponderLoggerFactory(lf)); err != nil {
		return nil, fmt.Errorf("configure NACK: %w", err)
	}
	if err := webrtc.ConfigureRTCPReportsWithOptions(reg, []report.ReceiverOption{report.WithReceiverLoggerFactory(lf)},
		report.WithSenderLoggerFactory(lf)); err != nil {
		return nil, fmt.Errorf("configure RTCP reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		return nil, fmt.Errorf("configure transport-cc: %w", err)
	}
	// Transport-wide feedback on what the server sends, as a browser
	// gives it: the server's bandwidth estimate for this subscriber, and
	// so the layers it forwards, depend on it.
	if err := webrtc.ConfigureTWCCSenderWithOptions(me, reg, twcc.WithLoggerFactory(lf)); err != nil {
		return nil, fmt.Errorf("configure transport-cc feedback: %w", err)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = lf
	std, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	se.SetNet(bufferedNet{std})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(includeLoopback)
	se.SetICEProxyDialer(dialer)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// maxNacks bounds the NACKs sent for one lost packet.
const maxNacks = 10

// udpReadBuffer is the receive buffer asked for the media sockets: a
// subscriber of several HD tracks receives bursts (key frames, and
// everything queued while its process waited for a CPU) that the
// system's default (about 200 KiB on Linux) may not hold. The kernel caps
// it at net.core.rmem_max.
const udpReadBuffer = 1 << 20

// bufferedNet opens UDP sockets with udpReadBuffer.
type bufferedNet struct{ transport.Net }

// ListenUDP implements transport.Net.
func (n bufferedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err == nil {
		_ = c.SetReadBuffer(udpReadBuffer) // best effort: a smaller buffer still works
	}
	return c, err
}

// ListenPacket implements transport.Net.
func (n bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if b, ok := c.(interface{ SetReadBuffer(int) error }); err == nil && ok {
		_ = b.SetReadBuffer(udpReadBuffer)
	}
	return c, err
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
	ice := s.dialer.iceServers(servers, s.opts.RelayOver)
	policy := s.transportPolicy()
	if policy == webrtc.ICETransportPolicyRelay && len(ice) == 0 {
		return errors.New("relayed media only, and the server offers no TURN server (over the transport asked for)")
	}
	pub, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: ice, ICETransportPolicy: policy,
		BundlePolicy: webrtc.BundlePolicyMaxBundle, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		return fmt.Errorf("create publish connection: %w", err)
	}
	// The server's offers decide the bundling of sub, as in the browser.
	sub, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: ice, ICETransportPolicy: policy,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
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
	for source, srcs := range s.sources() {
		t, err := s.addPublished(p, source, srcs, self)
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

// sources returns what the session publishes: per source, its one
// FrameSource or the encodings of a simulcast camera.
func (s *Session) sources() map[string][]FrameSource {
	out := map[string][]FrameSource{}
	if s.opts.Camera != nil {
		out[signal.SourceCamera] = []FrameSource{s.opts.Camera}
	}
	if len(s.opts.CameraLayers) > 0 {
		out[signal.SourceCamera] = s.opts.CameraLayers
	}
	if s.opts.Microphone != nil {
		out[signal.SourceMicrophone] = []FrameSource{s.opts.Microphone}
	}
	return out
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
	s.timer("publish-retry", time.Duration(p.publishFailures)*publishRetryStep, s.requestPublish)
}

func (s *Session) onSubscribeOffer(m *signal.Message) {
	p := s.peers
	if p == nil {
		return
	}
	s.applyTracks(p, m.Tracks)
	s.sendLayout(p)
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

// sendLayout asks Options.Layout for the sizes of the tracks now carried
// by sub and sends them.
func (s *Session) sendLayout(p *peers) {
	if s.opts.Layout == nil {
		return
	}
	var tracks []TrackInfo
	for _, slot := range p.mids {
		if rt := slot.owner.Load(); rt != nil {
			tracks = append(tracks, rt.info)
		}
	}
	slices.SortFunc(tracks, func(a, b TrackInfo) int {
		return strings.Compare(a.Name+"\x00"+a.Participant+"\x00"+a.Source+"\x00"+a.Mid, b.Name+"\x00"+b.Participant+"\x00"+b.Source+"\x00"+b.Mid)
	})
	sizes := s.opts.Layout(tracks)
	if len(sizes) == 0 {
		return
	}
	msgs, err := layoutMessages(sizes)
	if err != nil {
		s.log.Warn("not sending an invalid layout", "err", err)
		return
	}
	for _, m := range msgs {
		s.send(m)
	}
}

// onLayers applies the server's dynacast: the encodings of a simulcast
// track that nobody needs pause.
func (s *Session) onLayers(m *signal.Message) {
	p := s.peers
	if p == nil || m.Mid == "" {
		return
	}
	for _, t := range p.published {
		if t.transceiver.Mid() == m.Mid {
			s.log.Debug("layers needed", "source", t.source, "active", m.Active)
			t.setActive(m.Active)
		}
	}
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
