package sipedge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// fakePhone is the far end of a phoneLeg: a DTLS-SRTP endpoint on its own
// UDP socket, made of the same libraries a telephone's stack would be.
type fakePhone struct {
	sock *net.UDPConn
	rtp  chan []byte // SRTP the phone received
	fp   string
	cert tls.Certificate
	enc  *srtp.Context
	dec  *srtp.Context
}

func newFakePhone(t *testing.T) *fakePhone {
	t.Helper()
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	cert, fp, err := phoneCert()
	if err != nil {
		t.Fatal(err)
	}
	return &fakePhone{sock: sock, fp: fp, cert: cert, rtp: make(chan []byte, 64)}
}

func (p *fakePhone) addr() netip.AddrPort { return p.sock.LocalAddr().(*net.UDPAddr).AddrPort() }

// handshake runs DTLS as the server (the edge answered setup:active) and
// keys SRTP, checking the edge's certificate against want.
func (p *fakePhone) handshake(ctx context.Context, edge netip.AddrPort, want string) error {
	conn, err := dtls.Server(dtlsOnly{p.sock, p.rtp}, net.UDPAddrFromAddrPort(edge), &dtls.Config{
		Certificates: []tls.Certificate{p.cert}, SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		ClientAuth: dtls.RequireAnyClientCert, InsecureSkipVerify: true, ExtendedMasterSecret: dtls.RequireExtendedMasterSecret,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			if "sha-256 "+colonHex(sum[:]) != want {
				return errors.New("fingerprint mismatch")
			}
			return nil
		}})
	if err != nil {
		return err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		return err
	}
	state, _ := conn.ConnectionState()
	sc := srtp.Config{Profile: srtp.ProtectionProfileAes128CmHmacSha1_80}
	if err := sc.ExtractSessionKeysFromDTLS(&state, false); err != nil {
		return err
	}
	p.enc, _ = srtp.CreateContext(sc.Keys.LocalMasterKey, sc.Keys.LocalMasterSalt, sc.Profile)
	p.dec, _ = srtp.CreateContext(sc.Keys.RemoteMasterKey, sc.Keys.RemoteMasterSalt, sc.Profile)
	return nil
}

// dtlsOnly is the fake phone's socket as the DTLS library sees it: DTLS
// records; SRTP goes to rtp (RFC 7983).
type dtlsOnly struct {
	*net.UDPConn
	rtp chan []byte
}

func (d dtlsOnly) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := d.UDPConn.ReadFrom(b)
		if err != nil || n == 0 || b[0] < 128 || b[0] > 191 {
			return n, a, err
		}
		select {
		case d.rtp <- append([]byte(nil), b[:n]...):
		default:
		}
	}
}

// The edge and a telephone agree DTLS-SRTP keys, each checking the other's
// fingerprint; the edge hands on the telephone's Opus frames and telephone
// events, and sends it frames it can decrypt.
func TestPhoneLegDTLSSRTP(t *testing.T) {
	phone := newFakePhone(t)
	leg, err := newPhoneLeg(netip.MustParseAddr("127.0.0.1"), PortRange{}, netip.MustParseAddr("127.0.0.1"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.close()
	leg.opusPT, leg.dtmfPT, leg.remoteFP, leg.dtlsClient = 96, 101, phone.fp, true
	leg.expect(0, phone.addr())
	var mu sync.Mutex
	var opus [][]byte
	var tones int
	leg.start(func(b []byte, _ uint32) {
		mu.Lock()
		opus = append(opus, append([]byte(nil), b...))
		mu.Unlock()
	}, func(uint32, []byte) {
		mu.Lock()
		tones++
		mu.Unlock()
	})
	leg.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	edge := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(leg.rtpPort()))
	errc := make(chan error, 1)
	go func() { errc <- phone.handshake(ctx, edge, leg.fingerprint) }()
	if err := leg.waitReady(ctx); err != nil {
		t.Fatalf("edge: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("phone: %v", err)
	}

	send := func(pt uint8, seq uint16, payload []byte) {
		h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 42}
		raw, _ := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		out, err := phone.enc.EncryptRTP(nil, raw, &h)
		if err != nil {
			t.Fatal(err)
		}
		phone.sock.WriteToUDPAddrPort(out, edge)
	}
	got := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(opus), tones
	}
	deadline := time.Now().Add(5 * time.Second)
	for seq := uint16(1); ; seq++ {
		send(96, seq, []byte("an opus frame"))
		send(101, seq+1000, []byte{1, 0, 0, 160})
		if n, k := got(); n > 0 && k > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the edge did not hand on the telephone's frames")
		}
		time.Sleep(20 * time.Millisecond) // paced like a telephone's 20 ms frames
	}
	mu.Lock()
	if !bytes.Equal(opus[0], []byte("an opus frame")) {
		t.Errorf("the edge handed on %q", opus[0])
	}
	mu.Unlock()

	// Toward the telephone.
	leg.writeOpus([]byte("the meeting speaks"), 960)
	select {
	case buf := <-phone.rtp:
		var h rtp.Header
		pt, err := phone.dec.DecryptRTP(nil, buf, &h)
		if err != nil {
			t.Fatalf("the telephone cannot decrypt the edge's packet: %v", err)
		}
		if h.PayloadType != 96 || !bytes.Equal(pt[h.MarshalSize():], []byte("the meeting speaks")) {
			t.Fatalf("the telephone got PT %d %q", h.PayloadType, pt[h.MarshalSize():])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the telephone received nothing")
	}
	if leg.received.Load() == 0 || leg.sent.Load() != 1 {
		t.Errorf("counts: received %d, sent %d", leg.received.Load(), leg.sent.Load())
	}
}

// A telephone whose DTLS certificate is not the one its offer named is
// refused: no SRTP keys, no media.
func TestPhoneLegRefusesAnotherCertificate(t *testing.T) {
	phone := newFakePhone(t)
	leg, err := newPhoneLeg(netip.MustParseAddr("127.0.0.1"), PortRange{}, netip.MustParseAddr("127.0.0.1"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.close()
	_, other, _ := phoneCert()
	leg.opusPT, leg.remoteFP, leg.dtlsClient = 96, other, true
	leg.timeout = 2 * time.Second // a refused handshake ends by its deadline
	leg.expect(0, phone.addr())
	leg.start(nil, nil)
	leg.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go phone.handshake(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(leg.rtpPort())), leg.fingerprint)
	start := time.Now()
	err = leg.waitReady(ctx)
	t.Logf("refused after %v: %v", time.Since(start), err)
	if err == nil {
		t.Fatal("the edge accepted a DTLS certificate the offer did not name")
	}
}
