package sipedge

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzInspect feeds session descriptions from the network to the media
// policy and the rewrite.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{dtlsOffer, sdesOffer, plainOffer, "v=0\r\n", ""} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, allowSDES bool) {
		d, err := Inspect(body, allowSDES)
		if err != nil {
			return
		}
		if d.Mode != ModeDTLS && !(allowSDES && d.Mode == ModeSDES) {
			t.Fatalf("mode %q passed the policy (SDES allowed: %v)", d.Mode, allowSDES)
		}
		ports := make([]int, len(d.Media))
		if _, err := d.Rewrite(netip.MustParseAddr("127.0.0.1"), ports, ports); err != nil {
			t.Fatalf("an accepted description does not rewrite: %v", err)
		}
	})
}

// FuzzEdgeMessage runs sipgo's stream parser, as the TLS transport does,
// on bytes from a device, then what the edge reads of each request.
func FuzzEdgeMessage(f *testing.F) {
	f.Add([]byte("REGISTER sip:conclave.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5000;branch=z9hG4bK1\r\nFrom: <sip:alice@conclave.test>;tag=1\r\nTo: <sip:alice@conclave.test>\r\nCall-ID: 1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:5000;transport=tls>;expires=60\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:bob@conclave.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5000;branch=z9hG4bK2\r\nFrom: \"A\" <sip:alice@conclave.test>;tag=1\r\nTo: <sip:bob@conclave.test>\r\nCall-ID: 2\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5000;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: " + itoa(len(dtlsOffer)) + "\r\n\r\n" + dtlsOffer))
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := sip.NewParser()
		stream := p.NewSIPStream()
		_ = stream.ParseSIPStream(data, func(msg sip.Message) {
			req, ok := msg.(*sip.Request)
			if !ok {
				return
			}
			if to := req.To(); to != nil {
				_ = aorOf(to.Address)
			}
			if from := req.From(); from != nil {
				_ = aorOf(from.Address)
			}
			for _, h := range req.GetHeaders("Contact") {
				if ch, ok := h.(*sip.ContactHeader); ok {
					_, _ = ch.Params.Get("expires")
					_ = ch.Address.Clone()
				}
			}
			_, _ = sip.DialogIDFromRequestUAS(req)
			_, _ = sip.DialogIDFromRequestUAC(req)
			_, _ = Inspect(req.Body(), true)
		})
	})
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
