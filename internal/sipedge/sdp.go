package sipedge

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Mode is how a call's media is protected.
type Mode string

// The media modes. Plain RTP is never accepted.
const (
	// ModeDTLS is DTLS-SRTP (RFC 5763/5764): the SRTP keys are agreed
	// between the two endpoints and never cross the server.
	ModeDTLS Mode = "dtls-srtp"
	// ModeSDES is SDES-SRTP (RFC 4568): the keys travel in the SDP, which
	// the server reads, so the call is not end-to-end.
	ModeSDES Mode = "sdes-srtp"
)

// EndToEnd reports whether the mode keeps the media keys from the server.
func (m Mode) EndToEnd() bool { return m == ModeDTLS }

// ErrPlainRTP, ErrSDESDisabled and ErrNoMedia are returned by Inspect.
var (
	ErrPlainRTP     = errors.New("plain RTP is not allowed: offer SRTP keyed by DTLS (UDP/TLS/RTP/SAVP with a=fingerprint)")
	ErrSDESDisabled = errors.New("SDES-SRTP is disabled on this server: offer DTLS-SRTP (UDP/TLS/RTP/SAVP with a=fingerprint)")
	ErrNoMedia      = errors.New("the session description has no active media")
)

// maxSDP bounds the session descriptions the edge parses.
const maxSDP = 16 << 10

// Media is one active media line as the edge relays it.
type Media struct {
	Kind string // audio, video
	// Addr is where the endpoint wants to receive RTP (its c= and m=).
	Addr netip.AddrPort
	// Fingerprint is the DTLS certificate fingerprint ("sha-256 AB:..."),
	// empty under SDES.
	Fingerprint string
	// Codecs are the rtpmap encoding names offered, in order ("opus",
	// "PCMU", "telephone-event").
	Codecs []string
}

// Description is a parsed, checked session description.
type Description struct {
	sd    *sdp.SessionDescription
	Mode  Mode
	Media []Media
}

// Inspect parses an SDP body and checks it against the media policy:
// every active media line must use DTLS-SRTP, or SDES-SRTP when allowSDES
// is set. An offer that carries both keeps only DTLS-SRTP when SDES is
// disabled: its a=crypto lines are removed so that the keys go no further.
func Inspect(body []byte, allowSDES bool) (*Description, error) {
	if len(body) == 0 {
		return nil, errors.New("the request carries no session description; send an SDP offer")
	}
	if len(body) > maxSDP {
		return nil, fmt.Errorf("the session description is %d bytes; at most %d are accepted", len(body), maxSDP)
	}
	sd := &sdp.SessionDescription{}
	if err := sd.UnmarshalString(string(body)); err != nil {
		return nil, fmt.Errorf("the session description does not parse: %w", err)
	}
	d := &Description{sd: sd}
	sessionFP, _ := sd.Attribute("fingerprint")
	var sessionIP netip.Addr
	if sd.ConnectionInformation != nil && sd.ConnectionInformation.Address != nil {
		sessionIP, _ = netip.ParseAddr(sd.ConnectionInformation.Address.Address)
	}
	modes := map[Mode]bool{}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Port.Value == 0 {
			continue
		}
		if m.MediaName.Port.Value < 0 || m.MediaName.Port.Value > 65535 {
			return nil, fmt.Errorf("media port %d is out of range", m.MediaName.Port.Value)
		}
		proto := strings.ToUpper(strings.Join(m.MediaName.Protos, "/"))
		fp, hasFP := m.Attribute("fingerprint")
		if !hasFP && sessionFP != "" {
			fp, hasFP = sessionFP, true
		}
		hasCrypto := false
		for _, a := range m.Attributes {
			if a.Key == "crypto" {
				hasCrypto = true
			}
		}
		var mode Mode
		switch {
		case strings.HasPrefix(proto, "UDP/TLS/RTP/SAVP") && hasFP:
			mode = ModeDTLS
			if hasCrypto && !allowSDES {
				stripCrypto(m)
			}
		case (proto == "RTP/SAVP" || proto == "RTP/SAVPF") && hasCrypto:
			if !allowSDES {
				return nil, ErrSDESDisabled
			}
			mode = ModeSDES
		default:
			return nil, ErrPlainRTP
		}
		modes[mode] = true
		ip := sessionIP
		if m.ConnectionInformation != nil && m.ConnectionInformation.Address != nil {
			ip, _ = netip.ParseAddr(m.ConnectionInformation.Address.Address)
		}
		if !ip.IsValid() {
			return nil, errors.New("a media line has no IP address in c=")
		}
		md := Media{Kind: m.MediaName.Media, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(m.MediaName.Port.Value))}
		if mode == ModeDTLS {
			md.Fingerprint = fp
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			if _, rest, ok := strings.Cut(a.Value, " "); ok {
				name, _, _ := strings.Cut(rest, "/")
				md.Codecs = append(md.Codecs, name)
			}
		}
		d.Media = append(d.Media, md)
	}
	if len(d.Media) == 0 {
		return nil, ErrNoMedia
	}
	if len(modes) > 1 {
		return nil, errors.New("the media lines mix DTLS-SRTP and SDES-SRTP; use one for all")
	}
	for m := range modes {
		d.Mode = m
	}
	return d, nil
}

func stripCrypto(m *sdp.MediaDescription) {
	kept := m.Attributes[:0]
	for _, a := range m.Attributes {
		if a.Key != "crypto" {
			kept = append(kept, a)
		}
	}
	m.Attributes = kept
}

// iceAttributes are removed when media goes through the relay: the
// endpoints then send to the c= and m= the relay wrote.
var iceAttributes = map[string]bool{
	"candidate": true, "ice-ufrag": true, "ice-pwd": true, "ice-options": true,
	"end-of-candidates": true, "ice-lite": true, "remote-candidates": true,
}

// Rewrite returns the description with every active media line pointed at
// the relay: c= becomes ip, the i-th active m= port becomes rtp[i], an
// a=rtcp names rtcp[i], and ICE attributes are removed. Everything else
// (fingerprints, setup roles, codecs) is passed as it is.
func (d *Description) Rewrite(ip netip.Addr, rtp, rtcp []int) ([]byte, error) {
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	ci := &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip.String()}}
	d.sd.ConnectionInformation = ci
	d.sd.Origin.UnicastAddress = ip.String()
	d.sd.Origin.AddressType = addrType
	d.sd.Attributes = dropAttrs(d.sd.Attributes)
	i := 0
	for _, m := range d.sd.MediaDescriptions {
		if m.MediaName.Port.Value == 0 {
			continue
		}
		if i >= len(rtp) {
			return nil, errors.New("fewer relay ports than media lines")
		}
		m.MediaName.Port = sdp.RangedPort{Value: rtp[i]}
		if m.ConnectionInformation != nil {
			m.ConnectionInformation = ci
		}
		attrs := dropAttrs(m.Attributes)
		kept := attrs[:0]
		for _, a := range attrs {
			if a.Key != "rtcp" {
				kept = append(kept, a)
			}
		}
		m.Attributes = append(kept, sdp.Attribute{Key: "rtcp", Value: strconv.Itoa(rtcp[i]) + " IN " + addrType + " " + ip.String()})
		i++
	}
	return d.sd.Marshal()
}

func dropAttrs(as []sdp.Attribute) []sdp.Attribute {
	out := as[:0]
	for _, a := range as {
		if !iceAttributes[a.Key] {
			out = append(out, a)
		}
	}
	return out
}

// Fingerprints lists the DTLS fingerprints of the active media lines.
func (d *Description) Fingerprints() []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range d.Media {
		if m.Fingerprint != "" && !seen[m.Fingerprint] {
			seen[m.Fingerprint] = true
			out = append(out, m.Fingerprint)
		}
	}
	return out
}
