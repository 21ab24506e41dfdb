package sipedge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"

	"conclave/internal/audit"
	"conclave/internal/devca"
	"conclave/internal/dialin"
	"conclave/internal/meeting"
)

// Dial-in (docs/sip.md, "Dial-in to meetings"): a device calls
// sip:<room alias>@<domain>, or sip:<alias>*<PIN>@<domain>; the edge
// answers it itself, ends its DTLS-SRTP, takes the PIN from the address
// or from the keypad (RFC 4733 telephone events, ended by '#'), and
// joins the meeting through internal/dialin as a gateway participant
// that a host must let in. Opus is forwarded both ways without
// transcoding; a telephone that offers no Opus is refused.

// Audit action of a telephone that entered a meeting.
const ActionDialIn = "sip-dial-in"

// Dial-in timings.
const (
	// pinTimeout is how long the keypad may stay silent while a PIN is
	// awaited; maxPINTries is how many wrong PINs end the call.
	pinTimeout  = 30 * time.Second
	maxPINTries = 3
	// dialInRing bounds the wait for a host's consent (the telephone
	// rings, or hears silence after a keypad PIN, meanwhile).
	dialInRing = 3 * time.Minute
)

// ErrG711Only is the refusal of a telephone that offers no Opus.
var ErrG711Only = errors.New("meetings speak Opus and this telephone offered none (G.711 only): Conclave forwards audio without transcoding, so enable the Opus codec on the telephone")

// dialInMedia is what the edge takes from a telephone's offer.
type dialInMedia struct {
	index          int // of the audio m-line
	addr           netip.AddrPort
	opusPT, dtmfPT uint8 // dtmfPT 0: none offered
	opusFmtp       string
	dtmfRate       string
	mux            bool
	setup          string // the offer's a=setup
	fingerprint    string
}

// parseDialIn reads the audio line of a checked offer.
func parseDialIn(d *Description) (dialInMedia, error) {
	if d.Mode != ModeDTLS {
		return dialInMedia{}, errors.New("dialling into a meeting needs DTLS-SRTP (UDP/TLS/RTP/SAVP with a=fingerprint)")
	}
	sessionSetup, _ := d.sd.Attribute("setup")
	for i, m := range d.sd.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		dm := dialInMedia{index: i, setup: sessionSetup}
		for _, md := range d.Media {
			if md.Kind == "audio" {
				dm.addr, dm.fingerprint = md.Addr, md.Fingerprint
				break
			}
		}
		var codecs []string
		for _, a := range m.Attributes {
			switch a.Key {
			case "rtpmap":
				pt, rest, ok := strings.Cut(a.Value, " ")
				n, err := strconv.Atoi(pt)
				if !ok || err != nil || n < 0 || n > 127 {
					continue
				}
				name, rate, _ := strings.Cut(rest, "/")
				rate, _, _ = strings.Cut(rate, "/")
				codecs = append(codecs, name)
				switch {
				case strings.EqualFold(name, "opus") && rate == "48000" && dm.opusPT == 0:
					dm.opusPT = uint8(n)
				case strings.EqualFold(name, "telephone-event") && dm.dtmfPT == 0:
					dm.dtmfPT, dm.dtmfRate = uint8(n), rate
				}
			case "rtcp-mux":
				dm.mux = true
			case "setup":
				dm.setup = a.Value
			}
		}
		if dm.opusPT == 0 {
			return dialInMedia{}, fmt.Errorf("%w (it offered %s)", ErrG711Only, strings.Join(codecs, ", "))
		}
		for _, a := range m.Attributes {
			if a.Key == "fmtp" && strings.HasPrefix(a.Value, strconv.Itoa(int(dm.opusPT))+" ") {
				dm.opusFmtp = strings.TrimPrefix(a.Value, strconv.Itoa(int(dm.opusPT))+" ")
			}
		}
		if dm.setup == "" {
			dm.setup = "actpass"
		}
		return dm, nil
	}
	return dialInMedia{}, errors.New("the offer has no audio: a meeting is dialled for audio")
}

// answerDialIn writes the edge's answer: Opus (and telephone events) on
// the leg's ports, the edge's fingerprint and DTLS role; other media
// lines are refused (port 0).
func answerDialIn(d *Description, dm dialInMedia, ip netip.Addr, leg *phoneLeg) ([]byte, error) {
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	ans := &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "conclave", SessionID: uint64(time.Now().UnixNano()), SessionVersion: 1,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: ip.String()},
		SessionName:           "Conclave dial-in",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip.String()}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
	}
	for i, m := range d.sd.MediaDescriptions {
		if i != dm.index {
			ans.MediaDescriptions = append(ans.MediaDescriptions, &sdp.MediaDescription{MediaName: sdp.MediaName{
				Media: m.MediaName.Media, Port: sdp.RangedPort{Value: 0}, Protos: m.MediaName.Protos, Formats: m.MediaName.Formats}})
			continue
		}
		formats := []string{strconv.Itoa(int(dm.opusPT))}
		if dm.dtmfPT != 0 {
			formats = append(formats, strconv.Itoa(int(dm.dtmfPT)))
		}
		am := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: leg.rtpPort()},
			Protos: m.MediaName.Protos, Formats: formats}}
		am.WithValueAttribute("rtpmap", strconv.Itoa(int(dm.opusPT))+" opus/48000/2")
		fmtp := "useinbandfec=1"
		if dm.opusFmtp != "" {
			fmtp = dm.opusFmtp
		}
		am.WithValueAttribute("fmtp", strconv.Itoa(int(dm.opusPT))+" "+fmtp)
		if dm.dtmfPT != 0 {
			am.WithValueAttribute("rtpmap", strconv.Itoa(int(dm.dtmfPT))+" telephone-event/"+dm.dtmfRate)
			am.WithValueAttribute("fmtp", strconv.Itoa(int(dm.dtmfPT))+" 0-15")
		}
		am.WithValueAttribute("ptime", "20")
		am.WithPropertyAttribute("sendrecv")
		if dm.mux {
			am.WithPropertyAttribute("rtcp-mux")
		} else {
			am.WithValueAttribute("rtcp", strconv.Itoa(leg.rtcpPort())+" IN "+addrType+" "+ip.String())
		}
		am.WithValueAttribute("fingerprint", leg.fingerprint)
		if leg.dtlsClient {
			am.WithValueAttribute("setup", "active")
		} else {
			am.WithValueAttribute("setup", "passive")
		}
		ans.MediaDescriptions = append(ans.MediaDescriptions, am)
	}
	return ans.Marshal()
}

// splitDialIn reads the user part of a dialled address: "board" or
// "board*246810" (the PIN after the last '*').
func splitDialIn(user string) (alias, pin string) {
	alias = user
	if i := strings.LastIndexByte(user, '*'); i > 0 {
		p := user[i+1:]
		if p != "" && len(p) <= maxPINDigits && strings.Trim(p, "0123456789") == "" {
			alias, pin = user[:i], p
		}
	}
	return strings.ToLower(alias), pin
}

// dialInName is how the telephone is shown in the meeting.
func dialInName(display, username string) string {
	name := strings.TrimSpace(display)
	if name == "" {
		name = username
	}
	name += " (phone)"
	if r := []rune(name); len(r) > 64 {
		name = string(r[:64])
	}
	return name
}

// dialIn runs a call into a meeting, from the INVITE to its end.
func (e *Edge) dialIn(req *sip.Request, tx sip.ServerTransaction, id devca.Identity, src netip.Addr, alias, pin string, offer *Description) {
	target := "sip:" + alias + "@" + strings.ToLower(e.cfg.Domain)
	dm, err := parseDialIn(offer)
	if err != nil {
		e.refuseCall(tx, req, src, id, target, sip.StatusNotAcceptableHere, "Not Acceptable Here", err.Error(), false)
		return
	}
	leg, err := newPhoneLeg(e.cfg.RelayIP, e.cfg.RelayPorts, src, dm.mux)
	if err != nil {
		e.log.Error("dial-in media", "err", err)
		e.refuseCall(tx, req, src, id, target, sip.StatusServiceUnavailable, "Service Unavailable", "no media port is free", false)
		return
	}
	leg.opusPT, leg.dtmfPT, leg.remoteFP = dm.opusPT, dm.dtmfPT, dm.fingerprint
	// RFC 5763: an answerer to actpass should be active, so that the
	// handshake runs alongside the answer.
	leg.dtlsClient = strings.EqualFold(dm.setup, "actpass") || strings.EqualFold(dm.setup, "passive")
	leg.expect(0, dm.addr)
	if dm.mux {
		leg.expect(1, dm.addr)
	} else {
		leg.expect(1, netip.AddrPortFrom(dm.addr.Addr(), dm.addr.Port()+1))
	}
	body, err := answerDialIn(offer, dm, e.cfg.RelayIP, leg)
	if err != nil {
		leg.close()
		e.refuseCall(tx, req, src, id, target, sip.StatusInternalServerError, "Server Internal Error", "the answer could not be written", false)
		return
	}

	now := e.clock.Now().UTC()
	c := &call{e: e, ended: make(chan struct{}), leg: leg, rec: Record{ID: newCallID(), Kind: "dial-in", From: id.AOR, To: target,
		CallerSerial: id.Serial, Started: now, Media: ModeDTLS, EndToEnd: false, CallerFingerprint: dm.fingerprint,
		CalleeFingerprint: leg.fingerprint, Codecs: []string{"opus"}}}
	ua := &sipgo.DialogUA{Client: e.client, ContactHDR: e.contactHeader(), RewriteContact: true}
	a, err := ua.ReadInvite(req, tx)
	if err != nil {
		leg.close()
		e.respond(tx, req, sip.StatusBadRequest, "Bad Request", e.warning(err.Error()))
		return
	}
	c.a = a
	e.calls.add(c)
	e.calls.mu.Lock()
	e.calls.byA[a.ID] = c
	e.calls.mu.Unlock()
	a.Respond(sip.StatusTrying, "Trying", nil)
	e.putCDR(c.record())

	var account *meeting.Account
	if d := e.deps.Directory; d != nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		if u, err := d.UserByName(ctx, id.Username); err == nil {
			account = &meeting.Account{ID: u.ID, Username: u.Username}
		}
		cancel()
	}
	display := ""
	if f := req.From(); f != nil {
		display = f.DisplayName
	}
	fail := func(code int, reason, why string) {
		a.Respond(code, reason, nil, e.warning(why))
		c.rec.Status = code
		c.finish(why)
	}
	answer := func() bool {
		if err := a.Respond(sip.StatusOK, "OK", body, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
			c.rec.Status = sip.StatusOK
			c.finish("the answer could not be sent")
			return false
		}
		c.rec.Status = sip.StatusOK
		c.rec.Answered = e.clock.Now().UTC()
		e.putCDR(c.record())
		leg.connect()
		return true
	}
	var pins chan string
	leg.start(func(opus []byte, ts uint32) {
		if gw := c.gateway(); gw != nil {
			gw.FromPhone(opus, ts)
		}
	}, func(ts uint32, payload []byte) {
		c.tone(ts, payload)
	})
	join := func(pin string) (*dialin.Gateway, error) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		go func() {
			select {
			case <-a.Context().Done(): // the caller hung up or cancelled
				cancel()
			case <-ctx.Done():
			}
		}()
		return dialin.Join(ctx, dialin.Config{Meetings: e.deps.Meetings, Media: e.deps.Media, Room: alias, PIN: pin,
			Name: dialInName(display, id.Username), Addr: src, Account: account, ToPhone: leg.writeOpus,
			ConsentTimeout: dialInRing, Clock: e.clock, Logger: e.log})
	}
	refusal := func(err error) (int, string) {
		switch {
		case errors.Is(err, dialin.ErrUnavailable):
			return sip.StatusForbidden, "Forbidden"
		case errors.Is(err, dialin.ErrDenied):
			return 603, "Decline"
		case errors.Is(err, dialin.ErrNoHost):
			return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
		case a.Context().Err() != nil:
			return sip.StatusRequestTerminated, "Request Terminated"
		}
		return sip.StatusServiceUnavailable, "Service Unavailable"
	}

	var gw *dialin.Gateway
	if pin != "" {
		// The PIN came with the address: the telephone rings until a
		// host lets it in, and is answered only then.
		a.Respond(sip.StatusRinging, "Ringing", nil)
		gw, err = join(pin)
		if err != nil {
			code, reason := refusal(err)
			e.auditDialIn(id, src, target, audit.OutcomeFailure, err.Error())
			fail(code, reason, err.Error())
			return
		}
		c.setGateway(gw)
		if !answer() {
			gw.Leave()
			return
		}
	} else {
		// The PIN comes from the keypad: answer, then listen for it.
		if !answer() {
			return
		}
		pins = make(chan string, 1)
		c.setPINs(pins)
		ctx, cancel := context.WithTimeout(a.Context(), dtlsHandshakeTimeout)
		err := leg.waitReady(ctx)
		cancel()
		if err != nil {
			c.end("the telephone's media did not come up: " + err.Error())
			return
		}
		for try := 1; ; try++ {
			var p string
			select {
			case p = <-pins:
			case <-time.After(pinTimeout):
				c.end("no PIN was entered")
				return
			case <-a.Context().Done():
				c.finish("caller hung up")
				return
			}
			gw, err = join(p)
			if err == nil {
				break
			}
			e.auditDialIn(id, src, target, audit.OutcomeFailure, err.Error())
			if !errors.Is(err, dialin.ErrUnavailable) || try == maxPINTries {
				c.end(err.Error())
				return
			}
			c.resetPIN()
		}
		c.setGateway(gw)
	}
	e.auditDialIn(id, src, target, audit.OutcomeSuccess, "a host let the telephone in")
	e.log.Info("telephone in a meeting", "call", c.rec.ID, "from", id.AOR, "room", alias)
	go func() {
		select {
		case <-a.Context().Done():
			c.end("caller hung up")
		case <-gw.Done():
			c.end("the meeting ended the call: " + gw.Reason())
		case <-c.ended:
		}
	}()
}

func (e *Edge) auditDialIn(id devca.Identity, src netip.Addr, target, outcome, why string) {
	e.record(audit.Event{Actor: id.Username, Source: src.String(), Action: ActionDialIn, Target: target,
		Outcome: outcome, Details: map[string]string{"reason": why}})
}
