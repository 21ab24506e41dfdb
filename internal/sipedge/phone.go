package sipedge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	dtlselliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// A dial-in call ends its media at the edge (unlike a call between two
// devices, which the relay passes through): the edge is the telephone's
// DTLS-SRTP peer, reads its Opus frames and telephone events, and sends
// it the meeting's active speaker. One UDP socket carries RTP and RTCP
// (RFC 5761) when the telephone offers a=rtcp-mux, else a second one
// carries RTCP. Datagrams are accepted only from the IP address the
// telephone signals from, latched to the port it sends from.

// dtlsHandshakeTimeout bounds the telephone's DTLS handshake.
const dtlsHandshakeTimeout = 10 * time.Second

// dtlsProfiles are the SRTP protection profiles offered, best first: the
// AES-GCM ones (CCN-STIC-807), then AES-CM with HMAC-SHA1, which RFC 5764
// makes mandatory and many telephones use.
var dtlsProfiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80,
}

// phoneCert is the edge's DTLS certificate for one call: a fresh P-256
// key, self-signed (DTLS-SRTP authenticates by the SDP's fingerprint).
func phoneCert() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "Conclave dial-in"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, "sha-256 " + colonHex(sum[:]), nil
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	parts := make([]string, 0, len(b))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// phoneLeg is the telephone's media, terminated at the edge.
type phoneLeg struct {
	rtpSock  *net.UDPConn
	rtcpSock *net.UDPConn // nil when muxed
	allowIP  netip.Addr
	peer     [2]atomic.Pointer[netip.AddrPort] // RTP, RTCP

	opusPT, dtmfPT uint8
	cert           tls.Certificate
	fingerprint    string // ours
	remoteFP       string // the telephone's, from its offer: "sha-256 AB:..."
	dtlsClient     bool   // the edge opens the handshake (the offer said setup:passive)

	dtlsIn  chan []byte // DTLS records from the telephone
	dtls    *dtls.Conn
	timeout time.Duration // of the handshake

	mu      sync.Mutex // the SRTP contexts (set once the handshake is done)
	decrypt *srtp.Context
	encrypt *srtp.Context
	rtcpDec *srtp.Context

	// What the telephone sends: Opus frames and telephone events.
	onOpus func(payload []byte, ts uint32)
	onTone func(ts uint32, payload []byte)

	outMu  sync.Mutex
	seq    uint16
	ssrc   uint32
	outBuf []byte
	encBuf []byte

	received, sent atomic.Uint64
	closed         atomic.Bool
	wg             sync.WaitGroup
	ready          chan struct{} // the handshake finished
	failed         chan struct{} // it did not
	failOnce       sync.Once
	err            error
}

// newPhoneLeg opens the sockets for a telephone at callerIP.
func newPhoneLeg(ip netip.Addr, ports PortRange, callerIP netip.Addr, mux bool) (*phoneLeg, error) {
	cert, fp, err := phoneCert()
	if err != nil {
		return nil, err
	}
	l := &phoneLeg{allowIP: callerIP.Unmap(), cert: cert, fingerprint: fp, dtlsIn: make(chan []byte, 64),
		ready: make(chan struct{}), failed: make(chan struct{}), ssrc: mrand.Uint32(), seq: uint16(mrand.Uint32()), timeout: dtlsHandshakeTimeout,
		outBuf: make([]byte, 1500), encBuf: make([]byte, 1500)}
	if l.rtpSock, err = listenRelay(ip, ports); err != nil {
		return nil, err
	}
	if !mux {
		if l.rtcpSock, err = listenRelay(ip, ports); err != nil {
			l.rtpSock.Close()
			return nil, err
		}
	}
	return l, nil
}

func (l *phoneLeg) rtpPort() int { return l.rtpSock.LocalAddr().(*net.UDPAddr).Port }

func (l *phoneLeg) rtcpPort() int {
	if l.rtcpSock == nil {
		return l.rtpPort()
	}
	return l.rtcpSock.LocalAddr().(*net.UDPAddr).Port
}

// expect sets where the telephone receives until it sends itself
// (k: 0 RTP, 1 RTCP).
func (l *phoneLeg) expect(k int, ap netip.AddrPort) {
	if ap.Addr().Unmap() == l.allowIP {
		l.peer[k].CompareAndSwap(nil, &ap)
	}
}

// start reads the sockets; handlers get the telephone's media once the
// handshake (connect) is done.
func (l *phoneLeg) start(onOpus func([]byte, uint32), onTone func(uint32, []byte)) {
	l.onOpus, l.onTone = onOpus, onTone
	l.wg.Add(1)
	go l.read(l.rtpSock, 0)
	if l.rtcpSock != nil {
		l.wg.Add(1)
		go l.read(l.rtcpSock, 1)
	}
}

// connect runs the DTLS handshake in the background, once the telephone
// has the answer (it bounds the handshake's time).
func (l *phoneLeg) connect() { go l.handshake() }

// waitReady waits for the DTLS handshake.
func (l *phoneLeg) waitReady(ctx context.Context) error {
	select {
	case <-l.ready:
		return nil
	case <-l.failed:
		return l.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *phoneLeg) fail(err error) {
	l.failOnce.Do(func() {
		l.err = err
		close(l.failed)
	})
}

func (l *phoneLeg) handshake() {
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{l.cert},
		SRTPProtectionProfiles: dtlsProfiles,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		CipherSuites: []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		EllipticCurves:     []dtlselliptic.Curve{dtlselliptic.P256, dtlselliptic.P384},
		ClientAuth:         dtls.RequireAnyClientCert,
		InsecureSkipVerify: true, // the fingerprint in the offer is the check
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the telephone presented no DTLS certificate")
			}
			sum := sha256.Sum256(raw[0])
			if !strings.EqualFold(l.remoteFP, "sha-256 "+colonHex(sum[:])) {
				return errors.New("the telephone's DTLS certificate does not match the fingerprint of its offer")
			}
			return nil
		},
	}
	pc := newDTLSPacketConn(l)
	remote := net.UDPAddrFromAddrPort(l.peerOr(0))
	var conn *dtls.Conn
	var err error
	if l.dtlsClient {
		conn, err = dtls.Client(pc, remote, cfg)
	} else {
		conn, err = dtls.Server(pc, remote, cfg)
	}
	if err != nil {
		l.fail(fmt.Errorf("DTLS: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		l.fail(fmt.Errorf("the telephone's DTLS handshake failed: %w", err))
		return
	}
	l.dtls = conn
	profile, ok := conn.SelectedSRTPProtectionProfile()
	state, ok2 := conn.ConnectionState()
	if !ok || !ok2 {
		l.fail(errors.New("the telephone's DTLS handshake chose no SRTP profile"))
		return
	}
	var sp srtp.ProtectionProfile
	switch profile {
	case dtls.SRTP_AEAD_AES_256_GCM:
		sp = srtp.ProtectionProfileAeadAes256Gcm
	case dtls.SRTP_AEAD_AES_128_GCM:
		sp = srtp.ProtectionProfileAeadAes128Gcm
	default:
		sp = srtp.ProtectionProfileAes128CmHmacSha1_80
	}
	sc := srtp.Config{Profile: sp}
	if err := sc.ExtractSessionKeysFromDTLS(&state, l.dtlsClient); err != nil {
		l.fail(err)
		return
	}
	enc, err1 := srtp.CreateContext(sc.Keys.LocalMasterKey, sc.Keys.LocalMasterSalt, sp)
	dec, err2 := srtp.CreateContext(sc.Keys.RemoteMasterKey, sc.Keys.RemoteMasterSalt, sp, srtp.SRTPReplayProtection(64))
	rdec, err3 := srtp.CreateContext(sc.Keys.RemoteMasterKey, sc.Keys.RemoteMasterSalt, sp)
	if err := errors.Join(err1, err2, err3); err != nil {
		l.fail(err)
		return
	}
	l.mu.Lock()
	l.encrypt, l.decrypt, l.rtcpDec = enc, dec, rdec
	l.mu.Unlock()
	close(l.ready)
}

// peerOr is where the telephone receives on socket k (its latched
// address, or the one its SDP named).
func (l *phoneLeg) peerOr(k int) netip.AddrPort {
	if p := l.peer[k].Load(); p != nil {
		return *p
	}
	if p := l.peer[0].Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// read demultiplexes one socket (RFC 7983): DTLS to the handshake, SRTP
// to the handlers, SRTCP is read and dropped (the edge sends no reports
// of its own; the telephone's keep the NAT open).
func (l *phoneLeg) read(sock *net.UDPConn, k int) {
	defer l.wg.Done()
	buf := make([]byte, 1600)
	var dst []byte
	for {
		n, from, err := sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.closed.Load() {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != l.allowIP || n == 0 {
			continue
		}
		if p := l.peer[k].Load(); p == nil || *p != from {
			l.peer[k].Store(&from)
		}
		b := buf[:n]
		switch {
		case b[0] >= 20 && b[0] <= 63:
			select {
			case l.dtlsIn <- append([]byte(nil), b...):
			default:
			}
		case b[0] >= 128 && b[0] <= 191:
			if n >= 2 && b[1] >= 192 && b[1] <= 223 {
				continue // RTCP (RFC 5761, section 4)
			}
			l.mu.Lock()
			dec := l.decrypt
			l.mu.Unlock()
			if dec == nil {
				continue
			}
			var h rtp.Header
			out, err := dec.DecryptRTP(dst[:0], b, &h)
			if err != nil {
				continue
			}
			dst = out
			l.received.Add(1)
			payload := out[h.MarshalSize():]
			if h.Padding && len(payload) > 0 {
				pad := int(payload[len(payload)-1])
				if pad > len(payload) {
					continue
				}
				payload = payload[:len(payload)-pad]
			}
			switch h.PayloadType {
			case l.opusPT:
				if l.onOpus != nil && len(payload) > 0 {
					l.onOpus(payload, h.Timestamp)
				}
			case l.dtmfPT:
				if l.onTone != nil && l.dtmfPT != 0 {
					l.onTone(h.Timestamp, payload)
				}
			}
		}
	}
}

// writeOpus sends one Opus frame to the telephone.
func (l *phoneLeg) writeOpus(opus []byte, ts uint32) {
	l.mu.Lock()
	enc := l.encrypt
	l.mu.Unlock()
	dst := l.peer[0].Load()
	if enc == nil || dst == nil {
		return
	}
	l.outMu.Lock()
	defer l.outMu.Unlock()
	l.seq++
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: l.opusPT, SequenceNumber: l.seq, Timestamp: ts, SSRC: l.ssrc},
		Payload: opus}
	n, err := pkt.MarshalTo(l.outBuf)
	if err != nil {
		return
	}
	out, err := enc.EncryptRTP(l.encBuf[:0], l.outBuf[:n], &pkt.Header)
	if err != nil {
		return
	}
	l.encBuf = out[:0]
	if _, err := l.rtpSock.WriteToUDPAddrPort(out, *dst); err == nil {
		l.sent.Add(1)
	}
}

func (l *phoneLeg) close() {
	if !l.closed.CompareAndSwap(false, true) {
		return
	}
	l.fail(errors.New("the call ended"))
	if l.dtls != nil {
		l.dtls.Close()
	}
	l.rtpSock.Close()
	if l.rtcpSock != nil {
		l.rtcpSock.Close()
	}
	l.wg.Wait()
}

// dtlsPacketConn gives the DTLS library the telephone's DTLS records and
// sends its own to the telephone. A new read deadline wakes a blocked
// read, as the library expects of a net.PacketConn.
type dtlsPacketConn struct {
	l      *phoneLeg
	closed chan struct{} // the DTLS connection ended: reads return
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

func newDTLSPacketConn(l *phoneLeg) *dtlsPacketConn {
	return &dtlsPacketConn{l: l, closed: make(chan struct{}), changed: make(chan struct{})}
}

func (c *dtlsPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		deadline, changed := c.deadline, c.changed
		c.mu.Unlock()
		n, again, err := c.readOnce(p, deadline, changed)
		if !again {
			return n, net.UDPAddrFromAddrPort(c.l.peerOr(0)), err
		}
	}
}

// readOnce waits for one record until the deadline, or until it changes
// (again).
func (c *dtlsPacketConn) readOnce(p []byte, deadline time.Time, changed <-chan struct{}) (n int, again bool, err error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return 0, false, errDeadline
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case b := <-c.l.dtlsIn:
		return copy(p, b), false, nil
	case <-c.l.failed:
		return 0, false, net.ErrClosed
	case <-c.closed:
		return 0, false, net.ErrClosed
	case <-timeout:
		return 0, false, errDeadline
	case <-changed:
		return 0, true, nil
	}
}

func (c *dtlsPacketConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	dst := c.l.peerOr(0)
	if !dst.IsValid() {
		return len(p), nil // the telephone has not said where yet; DTLS retransmits
	}
	return c.l.rtpSock.WriteToUDPAddrPort(p, dst)
}

func (c *dtlsPacketConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *dtlsPacketConn) LocalAddr() net.Addr           { return c.l.rtpSock.LocalAddr() }
func (c *dtlsPacketConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }
func (c *dtlsPacketConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}
func (c *dtlsPacketConn) SetWriteDeadline(time.Time) error { return nil }

// errDeadline is a read deadline's timeout, as net.Conn reports it.
var errDeadline = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
