package sfu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"conclave/internal/sfu/mediasock"
)

// The server's own send path toward a subscriber (docs/architecture.md,
// "Media path"). Pion keeps ICE and the DTLS handshake; once the
// subscriber's connection is up over UDP, what the server forwards to it
// no longer goes through Pion's track writer, interceptor chain and SRTP
// session:
//
//   - the SRTP keys come from the DTLS connection's exporter (RFC 5764),
//     into a pion/srtp Context used directly;
//   - each packet is stamped with the next transport-wide sequence
//     number, marshalled, encrypted, and handed to the media socket,
//     which queues it in the frame's batch (mediasock, Hold/Release) so
//     that one subscriber's share of a frame leaves in one system call;
//   - the subscriber's RTCP is taken off the media socket by its reader
//     before Pion sees it, decrypted, and read in place (rtcpwalk.go):
//     transport-cc feedback goes to the probe meter and to the
//     subscriber's own estimator (estimator.go), NACKs are answered from
//     the packet caches, PLI and FIR go to the publisher;
//   - sender reports go out once a second, for all of the subscriber's
//     tracks in one compound packet.
//
// Everything on the way allocates nothing and hands nothing to another
// goroutine. A subscriber connected over ICE-TCP, or whose keys cannot be
// had, stays on Pion's path.

// sendPath is one subscriber's own send path.
type sendPath struct {
	sock  mediaSock
	meter *probeMeter // shared with the subscriber's prober
	est   *estimator

	mu      sync.Mutex // guards what follows, the writes' order
	out     *srtp.Context
	addr    netip.AddrPort
	tseq    uint16 // next transport-wide sequence number
	twcc    [2]byte
	plain   [1500]byte
	cipher  [1600]byte
	hdr     rtp.Header // EncryptRTP's scratch
	closed  bool
	srBuf   [1400]byte
	srCiph  [1500]byte
	srTimer func() bool

	// RTCP from the subscriber: read by the media socket's reader only.
	in    *srtp.Context
	rbuf  [1500]byte
	rhdr  rtcp.Header
	downs atomic.Pointer[map[uint32]*DownTrack] // by SSRC, copy on write
}

// mediaSock is what the send path needs of the media socket.
type mediaSock interface {
	WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// sendPathSetup is what a send path is made of.
type sendPathSetup struct {
	out, in *srtp.Context
	addr    netip.AddrPort
}

// errNoOwnPath says why a connection stays on Pion's path.
var errNoOwnPath = errors.New("own send path unavailable")

// ownPathKeys reads the SRTP keys and the remote address of a connected
// DTLS transport. client says whether this side is the DTLS client.
func ownPathKeys(t *webrtc.DTLSTransport, client bool) (sendPathSetup, error) {
	c := dtlsConnOf(t)
	if c == nil {
		return sendPathSetup{}, fmt.Errorf("%w: no DTLS connection", errNoOwnPath)
	}
	ua, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok || ua == nil {
		return sendPathSetup{}, fmt.Errorf("%w: not over UDP (%T)", errNoOwnPath, c.RemoteAddr())
	}
	dp, ok := c.SelectedSRTPProtectionProfile()
	if !ok {
		return sendPathSetup{}, fmt.Errorf("%w: no SRTP profile", errNoOwnPath)
	}
	var profile srtp.ProtectionProfile
	switch dp {
	case dtls.SRTP_AEAD_AES_128_GCM:
		profile = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AEAD_AES_256_GCM:
		profile = srtp.ProtectionProfileAeadAes256Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return sendPathSetup{}, fmt.Errorf("%w: SRTP profile %v", errNoOwnPath, dp)
	}
	state, ok := c.ConnectionState()
	if !ok {
		return sendPathSetup{}, fmt.Errorf("%w: no DTLS state", errNoOwnPath)
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return sendPathSetup{}, fmt.Errorf("%w: %v", errNoOwnPath, err)
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		return sendPathSetup{}, fmt.Errorf("%w: %v", errNoOwnPath, err)
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile, srtp.SRTCPReplayProtection(256))
	if err != nil {
		return sendPathSetup{}, fmt.Errorf("%w: %v", errNoOwnPath, err)
	}
	return sendPathSetup{out: out, in: in, addr: ua.AddrPort()}, nil
}

// dtlsConnOf reads the DTLS connection of a transport. Pion does not
// export it; its SRTP keys are what the exporter of this connection gives
// (RFC 5764, section 4.2), the same Pion's own SRTP session is keyed with.
// nil if Pion's DTLSTransport no longer has the field (a test fails then,
// TestOwnPathKeys, and connections stay on Pion's path).
func dtlsConnOf(t *webrtc.DTLSTransport) *dtls.Conn {
	if t == nil {
		return nil
	}
	f := reflect.ValueOf(t).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*dtls.Conn)(nil)) {
		return nil
	}
	return *(**dtls.Conn)(unsafe.Pointer(f.UnsafeAddr()))
}

// dtlsClient reports whether this side is the DTLS client, from the
// remote description's a=setup (RFC 8842: the answerer's "active" makes
// it the client).
func dtlsClient(remoteSDP string) (bool, error) {
	switch {
	case strings.Contains(remoteSDP, "a=setup:active"):
		return false, nil
	case strings.Contains(remoteSDP, "a=setup:passive"):
		return true, nil
	}
	return false, fmt.Errorf("%w: no DTLS role in the remote description", errNoOwnPath)
}

func newSendPath(sock mediaSock, setup sendPathSetup, meter *probeMeter) *sendPath {
	p := &sendPath{sock: sock, meter: meter, out: setup.out, in: setup.in, addr: setup.addr,
		est: newEstimator(bweInitial, bweMin, bweMax)}
	empty := map[uint32]*DownTrack{}
	p.downs.Store(&empty)
	return p
}

// attach routes the RTCP about d's SSRC to d.
func (p *sendPath) attach(d *DownTrack, ssrc uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[uint32]*DownTrack{}
	for k, v := range *p.downs.Load() {
		if v != d {
			m[k] = v
		}
	}
	m[ssrc] = d
	p.downs.Store(&m)
}

// detach forgets d.
func (p *sendPath) detach(d *DownTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[uint32]*DownTrack{}
	for k, v := range *p.downs.Load() {
		if v != d {
			m[k] = v
		}
	}
	p.downs.Store(&m)
}

// remote is the address packets go to.
func (p *sendPath) remote() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// setRemote moves the path to another address (a new ICE pair).
func (p *sendPath) setRemote(a netip.AddrPort) {
	p.mu.Lock()
	p.addr = a
	p.mu.Unlock()
}

// writeRTP sends one packet of down track d: h, whose Extensions are
// empty with room for one, and payload; now (unix ns) is when it is sent,
// for the transport-cc bookkeeping. It allocates nothing.
func (p *sendPath) writeRTP(d *DownTrack, twccID uint8, h *rtp.Header, payload []byte, now int64, batch *mediasock.Batch) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	seq := p.tseq
	if twccID != 0 {
		p.tseq++
		p.twcc[0], p.twcc[1] = byte(seq>>8), byte(seq)
		_ = h.SetExtension(twccID, p.twcc[:])
	}
	n, err := h.MarshalTo(p.plain[:])
	if err == nil {
		n, err = marshalPayload(p.plain[:], n, h, payload)
	}
	if err != nil {
		p.mu.Unlock()
		return
	}
	dst := p.cipher[:0]
	if batch != nil {
		if batch.Len() == 0 {
			batch.Reset(p.addr)
		}
		dst = batch.Space(n + srtpOverhead)[:0]
	}
	out, err := p.out.EncryptRTP(dst, p.plain[:n], &p.hdr)
	if err != nil || len(out) > cap(dst) || &out[0] != &dst[:1][0] {
		p.mu.Unlock()
		return
	}
	if twccID != 0 && p.meter != nil {
		p.meter.record(p.meter.open.Load(), seq, n, now)
	}
	d.sr.note(h.Timestamp, len(payload), now)
	if batch != nil {
		batch.Commit(len(out)) // sent with the rest of the share
	} else {
		_, _ = p.sock.WriteToAddrPort(out, p.addr)
	}
	p.mu.Unlock()
}

// srtpOverhead bounds what SRTP adds to a packet (the 16-byte GCM tag, or
// the 10-byte HMAC and room for a ROC).
const srtpOverhead = 16

// marshalPayload puts payload and the header's padding after the header
// (n bytes) in buf.
func marshalPayload(buf []byte, n int, h *rtp.Header, payload []byte) (int, error) {
	end := n + len(payload) + int(h.PaddingSize)
	if end > len(buf) {
		return 0, errors.New("packet too large")
	}
	copy(buf[n:], payload)
	if h.Padding && h.PaddingSize > 0 {
		pad := buf[n+len(payload) : end]
		clear(pad)
		pad[len(pad)-1] = h.PaddingSize
	}
	return end, nil
}

// handleRTCP reads one SRTCP datagram from the subscriber's address. It
// runs on the media socket's reader goroutine. It reports false for a
// datagram its keys do not open (another connection of the same address:
// Pion's then).
func (p *sendPath) handleRTCP(b []byte, now time.Time) bool {
	plain, err := p.in.DecryptRTCP(p.rbuf[:0], b, &p.rhdr)
	if errors.Is(err, srtp.ErrFailedToVerifyAuthTag) {
		return false // not this connection's
	}
	if err != nil || len(plain) == 0 || &plain[0] != &p.rbuf[0] {
		return true // a replay or garbage: dropped here
	}
	downs := *p.downs.Load()
	w := rtcpWalker{b: plain}
	for {
		pkt, ok := w.next()
		if !ok {
			return true
		}
		switch {
		case pkt.typ == rtcpRTPFB && pkt.count == fmtTWCC:
			p.feedback(&pkt, now)
		case pkt.typ == rtcpRTPFB && pkt.count == fmtNACK:
			if d := downs[pkt.mediaSSRC()]; d != nil {
				d.retransmitEach(func(resend func(uint16) bool) {
					nackEach(&pkt, func(seq uint16) { resend(seq) })
				})
			}
		case pkt.typ == rtcpPSFB && pkt.count == fmtPLI:
			if d := downs[pkt.mediaSSRC()]; d != nil {
				d.keyFrameRequested()
			}
		case pkt.typ == rtcpPSFB && pkt.count == fmtFIR:
			firSSRCs(&pkt, func(ssrc uint32) {
				if d := downs[ssrc]; d != nil {
					d.keyFrameRequested()
				}
			})
		}
	}
}

// feedback applies a transport-cc report to the probe meter and the
// estimator.
func (p *sendPath) feedback(pkt *rtcpPacket, now time.Time) {
	var r twccReader
	if !r.init(pkt.body) || p.meter == nil {
		return
	}
	base := p.meter.feedbackBegin(r.ref)
	p.est.feedbackStart()
	lost, total := 0, 0
	for {
		seq, received, at, ok := r.next()
		if !ok {
			break
		}
		sent, size, known := p.meter.feedbackPacket(seq, received, base+at)
		if !known {
			continue
		}
		total++
		if !received {
			lost++
		}
		p.est.packet(sent, size, received, base+at)
	}
	p.est.feedbackEnd(lost, total, now.UnixNano())
	p.meter.feedbackEnd()
}

// senderReportInterval is how often sender reports go out.
const senderReportInterval = time.Second

// sendReports sends a sender report for every track that sent since the
// last one, in compound packets.
func (p *sendPath) sendReports(now time.Time) {
	downs := *p.downs.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		out, err := p.out.EncryptRTCP(p.srCiph[:0], p.srBuf[:n], nil)
		if err == nil {
			_, _ = p.sock.WriteToAddrPort(out, p.addr)
		}
		n = 0
	}
	ntp := ntpTime(now)
	for ssrc, d := range downs {
		rep, ok := d.sr.report(now.UnixNano(), d.munger.clockRate)
		if !ok {
			continue
		}
		if n+28 > len(p.srBuf) {
			flush()
		}
		b := p.srBuf[n : n+28]
		b[0], b[1] = 0x80, rtcpSR
		binary.BigEndian.PutUint16(b[2:], 6) // 28 bytes: 7 words - 1
		binary.BigEndian.PutUint32(b[4:], ssrc)
		binary.BigEndian.PutUint64(b[8:], ntp)
		binary.BigEndian.PutUint32(b[16:], rep.rtpTime)
		binary.BigEndian.PutUint32(b[20:], rep.packets)
		binary.BigEndian.PutUint32(b[24:], rep.octets)
		n += 28
	}
	flush()
}

// ntpTime is t as a 64-bit NTP timestamp.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	s := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | frac
}

// close stops the path: nothing more is sent on it.
func (p *sendPath) close() {
	p.mu.Lock()
	p.closed = true
	stop := p.srTimer
	p.srTimer = nil
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// srStats is what a down track's sender reports say: under the send
// path's lock.
type srStats struct {
	packets, octets uint32
	lastTS          uint32
	lastAt          int64 // unix ns of the last packet sent
	sentSince       bool  // a packet went out since the last report
}

func (s *srStats) note(ts uint32, payload int, now int64) {
	s.packets++
	s.octets += uint32(payload)
	s.lastTS, s.lastAt = ts, now
	s.sentSince = true
}

type srReport struct{ rtpTime, packets, octets uint32 }

// report is the sender report due now, if the track sent since the last.
func (s *srStats) report(now int64, clockRate uint32) (srReport, bool) {
	if !s.sentSince {
		return srReport{}, false
	}
	s.sentSince = false
	elapsed := now - s.lastAt
	rt := s.lastTS + uint32(elapsed*int64(clockRate)/int64(time.Second))
	return srReport{rtpTime: rt, packets: s.packets, octets: s.octets}, true
}
