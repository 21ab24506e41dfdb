package sipedge

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"conclave/internal/audit"
	"conclave/internal/devca"
	"conclave/internal/dialin"
)

// A call is bridged as two dialogs: the caller's INVITE ends at the edge
// (leg A, where the edge is the user agent server) and the edge sends its
// own INVITE to the callee's registered contact over the callee's TLS
// connection (leg B, where it is the client). Each side sees the edge as
// its peer, so requests inside either dialog come back over the
// connection they belong to, and the edge can point the media at its
// relay and check both offer and answer against the media policy.

// ringTimeout bounds how long a callee may ring.
const ringTimeout = 60 * time.Second

type call struct {
	e      *Edge
	rec    Record
	a      *sipgo.DialogServerSession
	b      *sipgo.DialogClientSession
	relays []*relaySession
	once   sync.Once
	ended  chan struct{}

	// A dial-in (dialin.go): the telephone's media ends at the edge, and
	// a gateway participant is in the meeting for it.
	leg  *phoneLeg
	dmu  sync.Mutex
	gw   *dialin.Gateway
	pins chan string // the keypad's PIN, when one is awaited
	pin  pinCollector
}

func (c *call) gateway() *dialin.Gateway {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.gw
}

func (c *call) setGateway(g *dialin.Gateway) {
	c.dmu.Lock()
	c.gw = g
	c.pins = nil
	c.dmu.Unlock()
}

func (c *call) setPINs(ch chan string) {
	c.dmu.Lock()
	c.pins = ch
	c.dmu.Unlock()
}

func (c *call) resetPIN() {
	c.dmu.Lock()
	c.pin.reset()
	c.dmu.Unlock()
}

// tone takes a telephone event while a keypad PIN is awaited.
func (c *call) tone(ts uint32, payload []byte) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.pins == nil {
		return
	}
	if pin, ok := c.pin.add(ts, payload); ok {
		select {
		case c.pins <- pin:
		default:
		}
	}
}

type callTable struct {
	mu  sync.Mutex
	byA map[string]*call // caller's dialog, as the edge (UAS) sees it
	byB map[string]*call // callee's dialog, as the edge (UAC) sees it
	all map[*call]bool
}

func newCallTable() *callTable {
	return &callTable{byA: map[string]*call{}, byB: map[string]*call{}, all: map[*call]bool{}}
}

func (t *callTable) add(c *call) {
	t.mu.Lock()
	t.all[c] = true
	t.mu.Unlock()
}

func (t *callTable) remove(c *call) {
	t.mu.Lock()
	delete(t.all, c)
	if c.a != nil {
		delete(t.byA, c.a.ID)
	}
	if c.b != nil {
		delete(t.byB, c.b.ID)
	}
	t.mu.Unlock()
}

func (t *callTable) snapshot() []*call {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*call, 0, len(t.all))
	for c := range t.all {
		out = append(out, c)
	}
	return out
}

func (t *callTable) closeAll() {
	for _, c := range t.snapshot() {
		c.end("server shutdown")
	}
}

func (t *callTable) endSerial(serial string) {
	for _, c := range t.snapshot() {
		if c.rec.CallerSerial == serial || c.rec.CalleeSerial == serial {
			c.end("certificate revoked")
		}
	}
}

// ActiveCalls lists the records of the calls in progress.
func (e *Edge) ActiveCalls() []Record {
	var out []Record
	for _, c := range e.calls.snapshot() {
		out = append(out, c.record())
	}
	return out
}

func (c *call) record() Record {
	r := c.rec
	for _, rl := range c.relays {
		p, b := rl.counts()
		for i := range 2 {
			r.Packets[i] += p[i]
			r.Bytes[i] += b[i]
		}
	}
	if c.leg != nil {
		r.Packets[0], r.Packets[1] = c.leg.received.Load(), c.leg.sent.Load()
	}
	return r
}

// warning builds a Warning header (RFC 3261, 20.43) with a sentence.
func (e *Edge) warning(text string) sip.Header {
	return sip.NewHeader("Warning", `399 `+e.cfg.Host+` "`+strings.ReplaceAll(text, `"`, `'`)+`"`)
}

func (e *Edge) refuseCall(tx sip.ServerTransaction, req *sip.Request, src netip.Addr, id devca.Identity, to string, code int, reason, why string, count bool) {
	ev := audit.Event{Actor: id.Username, Source: src.String(), Action: ActionCallRefused, Target: to,
		Outcome: audit.OutcomeFailure, Details: map[string]string{"reason": why, "status": strconv.Itoa(code)}}
	if count {
		e.fail(src, ActionCallRefused, id.Username, to, why)
	} else {
		e.record(ev)
	}
	e.respond(tx, req, code, reason, e.warning(why))
}

func (e *Edge) handleInvite(req *sip.Request, tx sip.ServerTransaction, _ *devca.Identity) {
	conn := e.ln.conn(req.Source())
	src := conn.addr.Addr()
	if to := req.To(); to != nil {
		if _, ok := to.Params.Get("tag"); ok {
			e.respond(tx, req, sip.StatusNotAcceptableHere, "Not Acceptable Here", e.warning("re-INVITE is not supported; the session stays as negotiated"))
			return
		}
	}
	id, err := e.reverify(conn)
	if err != nil {
		e.refuseCall(tx, req, src, conn.identity, "", sip.StatusForbidden, "Forbidden", err.Error(), true)
		conn.Close()
		return
	}
	from := req.From()
	if from == nil || aorOf(from.Address) != id.AOR {
		e.refuseCall(tx, req, src, id, "", sip.StatusForbidden, "Forbidden", "the From address is not the one the certificate is bound to ("+id.AOR+")", true)
		return
	}
	if !e.digestOK(tx, req, id, true) {
		return
	}
	if !strings.EqualFold(req.Recipient.Host, e.cfg.Domain) {
		e.refuseCall(tx, req, src, id, req.Recipient.Host, sip.StatusForbidden, "Forbidden", "this server routes calls to "+e.cfg.Domain+" only", false)
		return
	}
	// A PIN dialled in the address (alias*PIN, dialin.go) stays out of
	// the audit and the logs: the target is named without it.
	alias, _ := splitDialIn(req.Recipient.User)
	target := "sip:" + alias + "@" + strings.ToLower(e.cfg.Domain)
	if target == id.AOR {
		e.refuseCall(tx, req, src, id, target, sip.StatusForbidden, "Forbidden", "a device cannot call its own address", false)
		return
	}
	offer, err := Inspect(req.Body(), e.cfg.AllowSDES)
	if err != nil {
		e.refuseCall(tx, req, src, id, target, sip.StatusNotAcceptableHere, "Not Acceptable Here", err.Error(), false)
		return
	}
	bindings := e.reg.lookup(target)
	if len(bindings) == 0 && e.deps.Meetings != nil && e.deps.Media != nil {
		if alias, pin, ok := e.roomOf(req.Recipient.User); ok {
			e.dialIn(req, tx, id, src, alias, pin, offer)
			return
		}
	}
	if len(bindings) == 0 {
		code, reason, why := e.unreachable(alias, target)
		e.refuseCall(tx, req, src, id, target, code, reason, why, false)
		return
	}
	e.bridge(req, tx, id, src, target, offer, bindings[0])
}

// unreachable says why nobody answers for user: an account without a
// registered device (480), a room when dial-in is not wired (404 with a
// sentence), or nothing (404).
func (e *Edge) unreachable(user, target string) (int, string, string) {
	d := e.deps.Directory
	if d == nil {
		return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", target + " is not registered"
	}
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	if _, err := d.UserByName(ctx, user); err == nil {
		return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", target + " has no registered device"
	}
	if _, err := d.RoomByAlias(ctx, user); err == nil {
		return sip.StatusNotFound, "Not Found", "dialling into meetings is not available on this edge; join " + user + " from a browser"
	}
	return sip.StatusNotFound, "Not Found", "no account or room is called " + user
}

// roomOf reports whether user (alias or alias*PIN) names a room.
func (e *Edge) roomOf(user string) (alias, pin string, ok bool) {
	d := e.deps.Directory
	if d == nil {
		return "", "", false
	}
	alias, pin = splitDialIn(user)
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	_, err := d.RoomByAlias(ctx, alias)
	return alias, pin, err == nil
}

func newCallID() string { return strings.ToLower(rand.Text()) }

func (e *Edge) contactHeader() sip.ContactHeader {
	port := e.ln.Addr().(interface{ String() string }).String()
	_, p, _ := strings.Cut(port[strings.LastIndex(port, ":"):], ":")
	n, _ := strconv.Atoi(p)
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "conclave", Host: e.cfg.Host, Port: n,
		UriParams: params("transport", "tls")}}
}

// bridge runs a call from the caller's INVITE to its end.
func (e *Edge) bridge(req *sip.Request, tx sip.ServerTransaction, id devca.Identity, src netip.Addr, target string,
	offer *Description, to *binding) {
	now := e.clock.Now().UTC()
	c := &call{e: e, ended: make(chan struct{}), rec: Record{ID: newCallID(), Kind: "call", From: id.AOR, To: target,
		CallerSerial: id.Serial, CalleeSerial: to.serial, Started: now, Media: offer.Mode, EndToEnd: offer.Mode.EndToEnd()}}
	if fps := offer.Fingerprints(); len(fps) > 0 {
		c.rec.CallerFingerprint = strings.Join(fps, ", ")
	}
	if len(offer.Media) > 0 {
		c.rec.Codecs = offer.Media[0].Codecs
	}
	ua := &sipgo.DialogUA{Client: e.client, ContactHDR: e.contactHeader(), RewriteContact: true}
	a, err := ua.ReadInvite(req, tx)
	if err != nil {
		e.respond(tx, req, sip.StatusBadRequest, "Bad Request", e.warning(err.Error()))
		return
	}
	c.a = a
	e.calls.add(c)
	e.calls.mu.Lock()
	e.calls.byA[a.ID] = c
	e.calls.mu.Unlock()
	a.Respond(sip.StatusTrying, "Trying", nil)

	fail := func(code int, reason, why string) {
		a.Respond(code, reason, nil, e.warning(why))
		c.rec.Status = code
		c.finish(why)
	}

	calleeIP := addrOf(to.flow)
	var rtpB, rtcpB []int
	for _, m := range offer.Media {
		rl, err := newRelaySession(e.cfg.RelayIP, e.cfg.RelayPorts, src, calleeIP, e.cfg.Tap)
		if err != nil {
			e.log.Error("media relay", "err", err)
			fail(sip.StatusServiceUnavailable, "Service Unavailable", "no media relay port is free")
			return
		}
		c.relays = append(c.relays, rl)
		rl.expect(0, 0, m.Addr)
		rl.expect(0, 1, netip.AddrPortFrom(m.Addr.Addr(), m.Addr.Port()+1))
		rtpB = append(rtpB, rl.port(1, 0))
		rtcpB = append(rtcpB, rl.port(1, 1))
	}
	body, err := offer.Rewrite(e.cfg.RelayIP, rtpB, rtcpB)
	if err != nil {
		fail(sip.StatusInternalServerError, "Server Internal Error", "the offer could not be rewritten")
		return
	}
	e.putCDR(c.record())

	inv := sip.NewRequest(sip.INVITE, *to.contact.Clone())
	fromURI := sip.Uri{Scheme: "sip", User: strings.TrimPrefix(strings.Split(id.AOR, "@")[0], "sip:"), Host: e.cfg.Domain}
	inv.AppendHeader(&sip.FromHeader{DisplayName: req.From().DisplayName, Address: fromURI,
		Params: params("tag", newCallID()[:12])})
	toURI := sip.Uri{Scheme: "sip", User: strings.TrimPrefix(strings.Split(target, "@")[0], "sip:"), Host: e.cfg.Domain}
	inv.AppendHeader(&sip.ToHeader{Address: toURI, Params: sip.NewParams()})
	callID := sip.CallIDHeader(c.rec.ID)
	inv.AppendHeader(&callID)
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(body)
	inv.SetTransport("TLS")
	inv.SetDestination(to.flow)

	ctx, cancel := context.WithTimeout(e.ctx, ringTimeout)
	defer cancel()
	go func() {
		select {
		case <-a.Context().Done(): // the caller cancelled
			cancel()
		case <-ctx.Done():
		}
	}()
	b, err := ua.WriteInvite(ctx, inv)
	if err != nil {
		fail(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", "the callee's device cannot be reached")
		return
	}
	c.b = b
	ringing := false
	err = b.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress {
			if !ringing {
				ringing = true
				a.Respond(sip.StatusRinging, "Ringing", nil)
			}
		}
		return nil
	}})
	if err != nil {
		var dr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &dr):
			code := dr.Res.StatusCode
			if code == sip.StatusUnauthorized || code == sip.StatusProxyAuthRequired {
				code = sip.StatusForbidden
			}
			fail(code, dr.Res.Reason, "the callee answered "+strconv.Itoa(dr.Res.StatusCode))
		case a.Context().Err() != nil:
			c.rec.Status = sip.StatusRequestTerminated
			c.finish("caller cancelled")
		default:
			fail(sip.StatusRequestTimeout, "Request Timeout", "the callee did not answer")
		}
		return
	}
	answer, err := Inspect(b.InviteResponse.Body(), e.cfg.AllowSDES)
	if err == nil && (answer.Mode != offer.Mode || len(answer.Media) != len(offer.Media)) {
		err = errors.New("the answer's media do not match the offer")
	}
	if err != nil {
		b.Ack(context.Background())
		b.Bye(context.Background())
		fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", "the callee's answer was refused: "+err.Error())
		return
	}
	if fps := answer.Fingerprints(); len(fps) > 0 {
		c.rec.CalleeFingerprint = strings.Join(fps, ", ")
	}
	var rtpA, rtcpA []int
	for i, m := range answer.Media {
		c.relays[i].expect(1, 0, m.Addr)
		c.relays[i].expect(1, 1, netip.AddrPortFrom(m.Addr.Addr(), m.Addr.Port()+1))
		rtpA = append(rtpA, c.relays[i].port(0, 0))
		rtcpA = append(rtcpA, c.relays[i].port(0, 1))
	}
	ansBody, err := answer.Rewrite(e.cfg.RelayIP, rtpA, rtcpA)
	if err != nil {
		b.Ack(context.Background())
		b.Bye(context.Background())
		fail(sip.StatusInternalServerError, "Server Internal Error", "the answer could not be rewritten")
		return
	}
	if err := b.Ack(context.Background()); err != nil {
		e.log.Info("ACK to callee", "err", err)
	}
	e.calls.mu.Lock()
	e.calls.byB[b.ID] = c
	e.calls.mu.Unlock()
	if err := a.Respond(sip.StatusOK, "OK", ansBody, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
		b.Bye(context.Background())
		c.rec.Status = sip.StatusOK
		c.finish("the answer could not be sent to the caller")
		return
	}
	c.rec.Status = sip.StatusOK
	c.rec.Answered = e.clock.Now().UTC()
	e.putCDR(c.record())
	e.log.Info("call answered", "call", c.rec.ID, "from", c.rec.From, "to", c.rec.To, "media", c.rec.Media)
	// Either side's BYE, a revocation or shutdown ends the call.
	go func() {
		select {
		case <-a.Context().Done():
			c.end("caller hung up")
		case <-b.Context().Done():
			c.end("callee hung up")
		case <-c.ended:
		}
	}()
}

// end hangs up both legs (those still up) and writes the final record.
func (c *call) end(reason string) {
	if c.a != nil && c.a.LoadState() < sip.DialogStateEnded && c.a.LoadState() >= sip.DialogStateEstablished {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.a.Bye(ctx)
		cancel()
	}
	if c.b != nil && c.b.LoadState() < sip.DialogStateEnded && c.b.LoadState() >= sip.DialogStateEstablished {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.b.Bye(ctx)
		cancel()
	}
	c.finish(reason)
}

// finish closes the relay and writes the final record, once.
func (c *call) finish(reason string) {
	c.once.Do(func() {
		close(c.ended)
		for _, rl := range c.relays {
			rl.close()
		}
		if gw := c.gateway(); gw != nil {
			gw.Leave()
		}
		if c.leg != nil {
			c.leg.close()
		}
		c.e.calls.remove(c)
		r := c.record()
		r.Ended = c.e.clock.Now().UTC()
		r.EndReason = reason
		c.rec = r
		c.e.putCDR(r)
		c.e.log.Info("call ended", "call", r.ID, "reason", reason, "packets", r.Packets)
	})
}

func (e *Edge) putCDR(r Record) {
	if err := e.deps.CDRs.Put(context.Background(), r); err != nil {
		e.log.Error("call record", "call", r.ID, "err", err)
	}
}

func (e *Edge) handleAck(req *sip.Request, tx sip.ServerTransaction) {
	e.calls.mu.Lock()
	id, _ := sip.DialogIDFromRequestUAS(req)
	c := e.calls.byA[id]
	e.calls.mu.Unlock()
	if c != nil {
		c.a.ReadAck(req, tx)
	}
}

func (e *Edge) handleCancel(req *sip.Request, tx sip.ServerTransaction) {
	// The transaction layer answered the CANCEL and ended the INVITE; the
	// caller's dialog context tells bridge.
}

func (e *Edge) handleBye(req *sip.Request, tx sip.ServerTransaction, id *devca.Identity) {
	e.calls.mu.Lock()
	idA, _ := sip.DialogIDFromRequestUAS(req)
	idB, _ := sip.DialogIDFromRequestUAC(req)
	ca, cb := e.calls.byA[idA], e.calls.byB[idB]
	e.calls.mu.Unlock()
	switch {
	case ca != nil && ca.rec.CallerSerial == id.Serial:
		if err := ca.a.ReadBye(req, tx); err != nil {
			e.respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		}
	case cb != nil && cb.rec.CalleeSerial == id.Serial:
		if err := cb.b.ReadBye(req, tx); err != nil {
			e.respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		}
	default:
		e.respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
	}
}
