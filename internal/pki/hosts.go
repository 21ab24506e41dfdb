package pki

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// DefaultHosts returns the names and addresses a server certificate should
// cover when none are configured: "localhost", the machine's host name,
// 127.0.0.1, ::1 and the addresses of the network interfaces that are up,
// leaving out link-local addresses. Entries that cannot be determined are
// skipped; the result has no duplicates.
func DefaultHosts() []string {
	hosts := []string{"localhost"}
	if name, err := os.Hostname(); err == nil {
		if n, err := normalizeDNSName(name); err == nil {
			hosts = append(hosts, n)
		}
	}
	hosts = append(hosts, "127.0.0.1", "::1")
	if ifaces, err := net.Interfaces(); err == nil {
		for _, ifi := range ifaces {
			if ifi.Flags&net.FlagUp == 0 {
				continue
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				var ip net.IP
				switch v := a.(type) {
				case *net.IPNet:
					ip = v.IP
				case *net.IPAddr:
					ip = v.IP
				}
				if ip == nil || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
					continue
				}
				hosts = append(hosts, ip.String())
			}
		}
	}
	out, _ := splitHosts(hosts) // every entry above is valid
	return out.all()
}

// hostSet is a normalised, de-duplicated set of DNS names and IP addresses.
type hostSet struct {
	dns []string
	ips []net.IP
}

// all returns the DNS names followed by the IP addresses, as strings.
func (h hostSet) all() []string {
	out := make([]string, 0, len(h.dns)+len(h.ips))
	out = append(out, h.dns...)
	for _, ip := range h.ips {
		out = append(out, ip.String())
	}
	return out
}

// splitHosts normalises configured host entries: IP addresses (optionally in
// brackets) become IPs, everything else must be a valid DNS name, which is
// lower-cased and stripped of a trailing dot. Empty entries are ignored and
// duplicates removed.
func splitHosts(hosts []string) (hostSet, error) {
	var set hostSet
	seenDNS := make(map[string]bool)
	seenIP := make(map[netip.Addr]bool)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		bare := strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if addr, err := netip.ParseAddr(bare); err == nil {
			if addr.Zone() != "" {
				return hostSet{}, fmt.Errorf("host %q: an IP address with a zone cannot be put in a certificate", h)
			}
			addr = addr.Unmap()
			if !seenIP[addr] {
				seenIP[addr] = true
				set.ips = append(set.ips, net.IP(addr.AsSlice()))
			}
			continue
		}
		name, err := normalizeDNSName(h)
		if err != nil {
			return hostSet{}, err
		}
		if !seenDNS[name] {
			seenDNS[name] = true
			set.dns = append(set.dns, name)
		}
	}
	return set, nil
}

// normalizeDNSName lower-cases name, removes one trailing dot and checks that
// it is a DNS name (or a wildcard "*.name") that fits in a certificate.
func normalizeDNSName(name string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if n == "" || len(n) > 253 {
		return "", fmt.Errorf("host %q is not a valid DNS name", name)
	}
	labels := strings.Split(n, ".")
	for i, label := range labels {
		if label == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q is not a valid DNS name", name)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				if c >= 0x80 {
					return "", fmt.Errorf("host %q is not a valid DNS name; write internationalised names in their xn-- (punycode) form", name)
				}
				return "", fmt.Errorf("host %q is not a valid DNS name", name)
			}
		}
	}
	return n, nil
}
