package sfu

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// ownPaths is the engine's registry of subscribers' own send paths by
// remote address, for the media socket's RTCP hook.
type ownPaths struct {
	mu    sync.RWMutex
	paths map[netip.AddrPort]*sendPath
}

func addrKey(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (o *ownPaths) add(a netip.AddrPort, p *sendPath) {
	o.mu.Lock()
	if o.paths == nil {
		o.paths = map[netip.AddrPort]*sendPath{}
	}
	o.paths[addrKey(a)] = p
	o.mu.Unlock()
}

func (o *ownPaths) remove(a netip.AddrPort, p *sendPath) {
	o.mu.Lock()
	if o.paths[addrKey(a)] == p {
		delete(o.paths, addrKey(a))
	}
	o.mu.Unlock()
}

func (o *ownPaths) get(a netip.AddrPort) *sendPath {
	o.mu.RLock()
	p := o.paths[addrKey(a)]
	o.mu.RUnlock()
	return p
}

// handleRTCP is the media socket's RTCP hook: a datagram from a
// subscriber on its own path is read here, on the socket's reader.
func (e *Engine) handleRTCP(b []byte, from netip.AddrPort) bool {
	p := e.own.get(from)
	if p == nil {
		return false // a publisher's, or a subscriber on Pion's path
	}
	return p.handleRTCP(b, time.Now())
}

// startOwnPath moves the subscriber onto the server's own send path
// (sendpath.go) once its connection is up; it stays on Pion's path if the
// connection is not over UDP or its keys cannot be had. It is called when
// the connection connects and when a track is added (a connection may
// connect before it carries anything).
func (s *Subscriber) startOwnPath() {
	e := s.eng
	if e == nil || e.sock == nil || s.own.Load() != nil || s.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		return
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	if s.own.Load() != nil || s.closedFlag() {
		return
	}
	var dt *webrtc.DTLSTransport
	for _, tr := range s.pc.GetTransceivers() {
		if snd := tr.Sender(); snd != nil && snd.Transport() != nil {
			dt = snd.Transport()
			break
		}
	}
	rd := s.pc.RemoteDescription()
	if dt == nil || rd == nil {
		return // no media yet: AddTrack calls again
	}
	client, err := dtlsClient(rd.SDP)
	if err == nil {
		err = directPair(dt.ICETransport())
	}
	if err == nil {
		var setup sendPathSetup
		setup, err = ownPathKeys(dt, client)
		if err == nil {
			s.useOwnPath(e, newSendPath(e.sock, setup, s.meter), dt)
			e.log.Debug("subscriber on the own send path", "remote", setup.addr)
			return
		}
	}
	if !s.ownRefused {
		s.ownRefused = true
		e.log.Debug("subscriber stays on Pion's send path", "err", err)
	}
}

func (s *Subscriber) useOwnPath(e *Engine, p *sendPath, dt *webrtc.DTLSTransport) {
	addr := p.remote()
	e.own.add(addr, p)
	s.own.Store(p)
	s.alloc.own.Store(p.est)
	// The ICE pair may change (a restart, a better pair): the path
	// follows its remote address.
	dt.ICETransport().OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
		if pair == nil || pair.Remote == nil {
			return
		}
		ip, err := netip.ParseAddr(pair.Remote.Address)
		if err != nil || !direct(pair) {
			s.leaveOwnPath(p)
			return
		}
		next := netip.AddrPortFrom(ip, pair.Remote.Port)
		prev := p.remote()
		if addrKey(prev) == addrKey(next) {
			return
		}
		e.own.remove(prev, p)
		p.setRemote(next)
		e.own.add(next, p)
	})
	s.mu.Lock()
	downs := make([]*DownTrack, 0, len(s.downs))
	for _, d := range s.downs {
		downs = append(downs, d)
	}
	s.mu.Unlock()
	for _, d := range downs {
		s.attachOwn(d, p)
	}
	var tick func()
	tick = func() {
		if s.closedFlag() {
			return
		}
		p.sendReports(time.Now())
		p.mu.Lock()
		if !p.closed {
			p.srTimer = s.clock.AfterFunc(senderReportInterval, tick)
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.srTimer = s.clock.AfterFunc(senderReportInterval, tick)
	p.mu.Unlock()
}

// attachOwn puts down track d on path p.
func (s *Subscriber) attachOwn(d *DownTrack, p *sendPath) {
	d.path.Store(p)
	if b := d.binding.Load(); b != nil {
		p.attach(d, b.ssrc)
	}
}

// directPair checks that the transport's selected pair can be sent on
// from the media socket itself: UDP, and a local candidate that is not a
// relay (a relayed pair's packets go through the TURN client of Pion's
// agent).
func directPair(t *webrtc.ICETransport) error {
	pair, err := t.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return fmt.Errorf("%w: no selected candidate pair", errNoOwnPath)
	}
	if !direct(pair) {
		return fmt.Errorf("%w: the pair %s is not direct UDP", errNoOwnPath, pair)
	}
	return nil
}

func direct(pair *webrtc.ICECandidatePair) bool {
	return pair.Local != nil && pair.Remote != nil && pair.Local.Protocol == webrtc.ICEProtocolUDP &&
		pair.Local.Typ != webrtc.ICECandidateTypeRelay
}

// leaveOwnPath puts the subscriber back on Pion's path: its pair is no
// longer one the media socket can send on.
func (s *Subscriber) leaveOwnPath(p *sendPath) {
	if !s.own.CompareAndSwap(p, nil) {
		return
	}
	s.alloc.own.CompareAndSwap(p.est, nil)
	s.mu.Lock()
	for _, d := range s.downs {
		d.path.CompareAndSwap(p, nil)
	}
	s.mu.Unlock()
	s.eng.own.remove(p.remote(), p)
	p.close()
	s.eng.log.Debug("subscriber back on Pion's send path: its ICE pair is not direct UDP")
}

// stopOwnPath ends the subscriber's own path.
func (s *Subscriber) stopOwnPath() {
	p := s.own.Load()
	if p == nil || s.eng == nil {
		return
	}
	s.eng.own.remove(p.remote(), p)
	p.close()
}

// closedFlag reports whether the subscriber is closed.
func (s *Subscriber) closedFlag() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
