// Package sfu is Conclave's selective forwarding unit: it receives media
// tracks from publishers over WebRTC and forwards their RTP packets, without
// decoding them, to subscribers. It knows nothing about rooms or signaling;
// the meeting package tells it who publishes and who subscribes to what.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/conn"
	"conclave/internal/metrics"
	"conclave/internal/pionlog"
	"conclave/internal/sfu/mediasock"
)

// Config holds the media settings of a conference node.
type Config struct {
	// UDPAddr is the single UDP address every peer connection's ICE shares,
	// for example ":8443" or "127.0.0.1:0". Required.
	UDPAddr string
	// TCPAddr, when set, accepts passive ICE-TCP on this address for clients
	// whose networks block UDP.
	TCPAddr string
	// PublicIPs are extra addresses announced as host candidates, for a node
	// behind 1:1 NAT. Local addresses are still announced.
	PublicIPs []string
	// IncludeLoopback announces loopback addresses too, so that a browser on
	// the same machine can connect over 127.0.0.1.
	IncludeLoopback bool
	// Net lists the interfaces whose addresses ICE announces (ICE-TCP
	// candidates come from it); nil is the system's, listed anew for
	// each peer connection. A test that runs the node inside a network
	// namespace gives one listed there.
	Net transport.Net
	// Logger receives the SFU's logs; nil means slog.Default().
	Logger *slog.Logger
	// Tap, when set, sees every packet the SFU forwards. It exists so that
	// tests can show what the server sees (end-to-end encrypted payloads);
	// production leaves it nil.
	Tap Tap
	// Clock runs the SFU's timers (key frame throttling, dynacast's
	// debounce, deferred negotiation, the allocator's rounds); nil means
	// clock.System. Packet timestamps are real time, whatever it is.
	Clock clock.Clock
}

// Tap observes forwarded packets. It is called on the forwarding path and
// must return quickly; it must not keep pkt or its payload after returning.
type Tap interface {
	Packet(participant, source, codec string, pkt *rtp.Packet)
}

// Engine builds peer connections that share one media port and one set of
// codecs and interceptors.
type Engine struct {
	tap    Tap
	clock  clock.Clock
	sock   *mediasock.Socket // the media UDP socket
	own    ownPaths          // subscribers on the own send path (sendpath.go)
	api    *webrtc.API       // publishers
	subAPI *webrtc.API       // subscribers: TWCC stamping and a send-side estimator

	ccMu      sync.Mutex // serialises subscriber creation to pair estimators
	estimator cc.BandwidthEstimator
	meter     *probeMeter
	log       *slog.Logger
	tcp       net.Listener
	udpMux    interface{ Close() error }
	tcpMux    interface{ Close() error }
}

// NewEngine opens the media sockets and prepares the WebRTC stack.
func NewEngine(cfg Config) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{log: log, tap: cfg.Tap, clock: clock.Or(cfg.Clock)}
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.Factory(log, slog.LevelWarn)
	applyDTLSPolicy(&se)

	sock, err := mediasock.Listen(cfg.UDPAddr, mediasock.Config{Logger: log, Clock: e.clock})
	if err != nil {
		return nil, fmt.Errorf("open media UDP port %s: %w", cfg.UDPAddr, err)
	}
	e.sock = sock
	sock.SetRTCPHandler(e.handleRTCP)
	udpMux := webrtc.NewICEUDPMux(se.LoggerFactory.NewLogger("udpmux"), sock)
	e.udpMux = udpMux
	se.SetICEUDPMux(udpMux)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}

	if cfg.TCPAddr != "" {
		tcp, err := net.Listen("tcp", cfg.TCPAddr)
		if err != nil {
			sock.Close()
			return nil, fmt.Errorf("open media TCP port %s: %w", cfg.TCPAddr, err)
		}
		e.tcp = tcp
		tcpMux := webrtc.NewICETCPMux(se.LoggerFactory.NewLogger("tcpmux"), tcp, 32)
		e.tcpMux = tcpMux
		se.SetICETCPMux(tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
	}
	if len(cfg.PublicIPs) > 0 {
		for _, ip := range cfg.PublicIPs {
			if net.ParseIP(ip) == nil {
				e.Close()
				return nil, fmt.Errorf("public address %q is not an IP address", ip)
			}
		}
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteAppend,
		})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("set public addresses: %w", err)
		}
	}
	// Browsers hide their host addresses behind mDNS names; the server has
	// no use for resolving them (peer-reflexive candidates appear anyway).
	// Disabled, not the zero value: that means "query only", which opens
	// an mDNS socket and a reader for every peer connection.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)

	me, err := newMediaEngine()
	if err != nil {
		e.Close()
		return nil, err
	}
	reg, err := newInterceptors(me, se.LoggerFactory)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.api = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg))

	subME, err := newMediaEngine()
	if err != nil {
		e.Close()
		return nil, err
	}
	subReg, err := e.newSubscriberInterceptors(subME, se.LoggerFactory)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.subAPI = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(subME), webrtc.WithInterceptorRegistry(subReg))
	return e, nil
}

// UDPAddr returns the address the media UDP socket listens on.
func (e *Engine) UDPAddr() net.Addr { return e.sock.LocalAddr() }

// TCPAddr returns the ICE-TCP listener's address, or nil.
func (e *Engine) TCPAddr() net.Addr {
	if e.tcp == nil {
		return nil
	}
	return e.tcp.Addr()
}

// Close releases the media sockets. Peer connections must be closed first.
func (e *Engine) Close() error {
	var errs []error
	if e.udpMux != nil {
		errs = append(errs, e.udpMux.Close())
	} else if e.sock != nil {
		errs = append(errs, e.sock.Close())
	}
	if e.tcpMux != nil {
		errs = append(errs, e.tcpMux.Close())
	} else if e.tcp != nil {
		errs = append(errs, e.tcp.Close())
	}
	return errors.Join(errs...)
}

var pcConfig = webrtc.Configuration{
	BundlePolicy:  webrtc.BundlePolicyMaxBundle,
	RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
}

func (e *Engine) newPeerConnection() (*webrtc.PeerConnection, error) {
	return e.api.NewPeerConnection(pcConfig)
}

// newSubscriberConnection creates a subscriber's peer connection with its
// bandwidth estimator and probe meter (nil without transport-cc).
func (e *Engine) newSubscriberConnection() (*webrtc.PeerConnection, cc.BandwidthEstimator, *probeMeter, error) {
	e.ccMu.Lock()
	defer e.ccMu.Unlock()
	e.estimator, e.meter = nil, nil
	pc, err := e.subAPI.NewPeerConnection(pcConfig)
	if err != nil {
		return nil, nil, nil, err
	}
	est, meter := e.estimator, e.meter
	e.estimator, e.meter = nil, nil
	if est == nil {
		meter = nil
	}
	return pc, est, meter, nil
}

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: "ccm", Parameter: "fir"},
	{Type: "nack"},
	{Type: "nack", Parameter: "pli"},
	{Type: "transport-cc"},
}

// Codecs offered and accepted. Payload types follow Chromium's usual
// numbering so that SDPs stay readable.
var offeredCodecs = []struct {
	params webrtc.RTPCodecParameters
	kind   webrtc.RTPCodecType
}{
	{webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: []webrtc.RTCPFeedback{{Type: "transport-cc"}}},
		PayloadType: 111}, webrtc.RTPCodecTypeAudio},
	{webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback},
		PayloadType:        96}, webrtc.RTPCodecTypeVideo},
	{webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback},
		PayloadType:        98}, webrtc.RTPCodecTypeVideo},
}

func newMediaEngine() (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range offeredCodecs {
		if err := me.RegisterCodec(c.params, c.kind); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c.params.MimeType, err)
		}
	}
	exts := []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{"urn:ietf:params:rtp-hdrext:sdes:mid", webrtc.RTPCodecTypeAudio},
		{"urn:ietf:params:rtp-hdrext:sdes:mid", webrtc.RTPCodecTypeVideo},
		{"urn:ietf:params:rtp-hdrext:ssrc-audio-level", webrtc.RTPCodecTypeAudio},
		{"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", webrtc.RTPCodecTypeVideo},
		{"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", webrtc.RTPCodecTypeVideo},
	}
	for _, x := range exts {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: x.uri}, x.kind); err != nil {
			return nil, fmt.Errorf("register header extension %s: %w", x.uri, err)
		}
	}
	return me, nil
}

// newInterceptors chooses the RTCP machinery. Toward publishers: NACK
// generation and receiver reports. Toward subscribers: sender reports only;
// retransmissions are answered by the SFU from each up track's packet cache
// (shared by all subscribers) rather than by a per-subscriber responder.
func newInterceptors(me *webrtc.MediaEngine, lf logging.LoggerFactory) (*interceptor.Registry, error) {
	reg := &interceptor.Registry{}
	// A lost packet is asked for a few times, not for as long as the
	// generator remembers it (Pion's default: every 100 ms): a loaded
	// link or server would otherwise carry a growing stream of requests
	// for packets long useless.
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorMaxNacksPerPacket(maxNacksPerPacket), nack.WithGeneratorLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("nack generator: %w", err)
	}
	reg.Add(gen)
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("receiver reports: %w", err)
	}
	reg.Add(rr)
	sr, err := report.NewSenderInterceptor(report.WithSenderLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("sender reports: %w", err)
	}
	reg.Add(sr)
	if err := webrtc.ConfigureTWCCSenderWithOptions(me, reg, twcc.WithLoggerFactory(lf)); err != nil {
		return nil, fmt.Errorf("transport-cc: %w", err)
	}
	return reg, nil
}

// Bandwidth estimation toward subscribers: every packet carries the
// transport-wide sequence number extension, the subscriber's browser
// answers with transport-cc feedback, and a send-side estimator (Google
// congestion control) per subscriber connection turns it into a target
// bitrate that the subscriber's stream allocator shares out. The pacer is
// the no-op one: packets leave on the forwarding goroutine, not through a
// queue. A probe meter per connection measures padding clusters, which
// the estimator cannot use to grow quickly (see probemeter.go). The
// estimate starts low, as browsers' does: the first allocation rounds send
// the lowest layers and probe for more, rather than assume 1.5 Mbit/s.
const (
	bweInitial = 300_000
	bweMin     = 100_000
	bweMax     = 30_000_000
)

func (e *Engine) newSubscriberInterceptors(me *webrtc.MediaEngine, lf logging.LoggerFactory) (*interceptor.Registry, error) {
	reg := &interceptor.Registry{}
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(
			gcc.SendSideBWEInitialBitrate(bweInitial),
			gcc.SendSideBWEMinBitrate(bweMin),
			gcc.SendSideBWEMaxBitrate(bweMax),
			gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
			gcc.WithLoggerFactory(lf),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("congestion control: %w", err)
	}
	ccf.OnNewPeerConnection(func(_ string, est cc.BandwidthEstimator) {
		// Called inside NewPeerConnection, under ccMu.
		e.estimator = est
	})
	reg.Add(ccf)
	// Inside the transport-wide sequence numbering, so that the meter
	// sees the numbers of the packets it notes.
	reg.Add(&probeMeterFactory{created: func(m *probeMeter) {
		e.meter = m // inside NewPeerConnection, under ccMu
	}})
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		return nil, fmt.Errorf("transport-cc header extension: %w", err)
	}
	sr, err := report.NewSenderInterceptor(report.WithSenderLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("sender reports: %w", err)
	}
	reg.Add(sr)
	return reg, nil
}

// maxNacksPerPacket is how many times the server asks a publisher for one
// lost packet.
const maxNacksPerPacket = 10

// ForwardDelay reads the histogram of the delay the server adds to the
// media it forwards (arrival.go): from the kernel's receive timestamp of
// each RTP packet to its last copy sent.
func (e *Engine) ForwardDelay() metrics.DelayHistogram { return e.sock.ForwardDelay() }

// SendStats reads the media socket's batched-send figures.
func (e *Engine) SendStats() metrics.SendStats { return e.sock.SendStats() }

var _ conn.Engine = (*Engine)(nil)
