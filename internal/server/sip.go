package server

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"conclave/internal/clock"
	"conclave/internal/devca"
	"conclave/internal/sipedge"
	"conclave/internal/web"
)

// openSIP prepares the device registration authority and the SIP edge
// when cfg.SIPListen is set (docs/sip.md).
func (s *Server) openSIP(clk clock.Clock, opts Options) (*web.Telephony, error) {
	cfg := s.cfg
	if cfg.SIPListen == "" {
		return nil, nil
	}
	domain := cfg.SIPDomain
	if domain == "" {
		domain = s.url0()
	}
	ca, err := devca.Open(devca.Config{Dir: filepath.Join(cfg.DataDir, "devca"), Domain: domain, BaseURL: s.url,
		OrgName: cfg.OrgName, Clock: clk, Audit: s.audit, Logger: s.log, Box: s.ops.box, Fields: s.fields}, s.store, s.store)
	if err != nil {
		return nil, err
	}
	cdrs, err := sipedge.OpenCDRLog(filepath.Join(cfg.DataDir, "sip"), s.store, s.ops.box)
	if err != nil {
		return nil, err
	}
	lo, hi, err := cfg.SIPRelayRange()
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(cfg.SIPListen)
	if err != nil {
		return nil, fmt.Errorf("--sip-listen %q: %w", cfg.SIPListen, err)
	}
	relay := relayIP(cfg.SIPRelayIP, cfg.PublicIPs, host)
	sipHost := host
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsUnspecified() {
		sipHost = relay.String()
	}
	hosts := []string{domain, sipHost}
	if relay.String() != sipHost {
		hosts = append(hosts, relay.String())
	}
	var uniq []string
	for _, h := range append(hosts, cfg.Hosts...) {
		if !slices.Contains(uniq, h) {
			uniq = append(uniq, h)
		}
	}
	cert, err := ca.ServerCertificate(uniq)
	if err != nil {
		return nil, err
	}
	s.sip, err = sipedge.New(sipedge.Config{Listen: cfg.SIPListen, Domain: domain, Host: sipHost, RelayIP: relay,
		RelayPorts: sipedge.PortRange{Min: lo, Max: hi}, AllowSDES: cfg.SIPAllowSDES, Digest: strings.ToUpper(cfg.SIPDigest), Certificate: cert,
		Tap: opts.SIPTap, Clock: clk, Logger: s.log},
		sipedge.Deps{CA: ca, Guard: s.guard, Audit: s.audit, CDRs: cdrs, Directory: s.store,
			Meetings: s.meetings, Media: s.engine})
	if err != nil {
		return nil, err
	}
	if err := s.sip.Start(); err != nil {
		return nil, err
	}
	s.sipCA = ca
	return &web.Telephony{CA: ca, Edge: s.sip, CDRs: cdrs, Guard: s.guard, AllowSDES: cfg.SIPAllowSDES, RequireDigest: cfg.SIPDigest != "",
		Registrar: net.JoinHostPort(sipHost, portOf(s.sip.Addr())), Devices: s.store}, nil
}

// relayIP picks the media relay's address: the configured one, the first
// public IP, the SIP listener's own address, or this machine's first.
func relayIP(configured string, public []string, listenHost string) netip.Addr {
	for _, c := range append([]string{configured}, public...) {
		if ip, err := netip.ParseAddr(c); err == nil {
			return ip.Unmap()
		}
	}
	if ip, err := netip.ParseAddr(listenHost); err == nil && !ip.IsUnspecified() {
		return ip.Unmap()
	}
	ip, _ := netip.ParseAddr(firstAddress())
	return ip
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// SIPAddr is the SIP-TLS listener's address, nil when SIP is off.
func (s *Server) SIPAddr() net.Addr {
	if s.sip == nil {
		return nil
	}
	return s.sip.Addr()
}

// SIPDomain is the SIP domain, "" when SIP is off.
func (s *Server) SIPDomain() string {
	if s.sipCA == nil {
		return ""
	}
	return s.sipCA.Domain()
}

// SIP is the SIP edge, nil when SIP is off.
func (s *Server) SIP() *sipedge.Edge { return s.sip }

// DeviceCA is the device registration authority, nil when SIP is off.
func (s *Server) DeviceCA() *devca.Authority { return s.sipCA }
