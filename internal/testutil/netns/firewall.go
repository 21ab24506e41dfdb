package netns

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Firewall is an nftables ruleset loaded into one namespace of a Link: it
// lets that namespace talk to one address of the other over a few TCP
// ports only, as a hotel's or a ministry's network that opens nothing
// but HTTPS; every other packet, UDP included, is dropped and counted.
type Firewall struct {
	l  *Link
	ns string
}

// firewallTable is the nftables table of a Firewall (one per namespace).
const firewallTable = "conclave_firewall"

// AllowOnlyTCP drops, in namespace ns (Near or Far), every packet in
// and out except loopback and TCP between ns and addr on the given ports
// of addr. It needs the nft command (Debian's nftables); without it the
// test fails.
func (l *Link) AllowOnlyTCP(t testing.TB, ns, addr string, ports ...int) *Firewall {
	t.Helper()
	if ns != l.Near && ns != l.Far {
		t.Fatalf("netns: %q is neither %s nor %s", ns, l.Near, l.Far)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("netns: nft not found: install nftables (scripts/test does)")
	}
	family := "ip"
	if strings.Contains(addr, ":") {
		family = "ip6"
	}
	set := make([]string, len(ports))
	for i, p := range ports {
		set[i] = strconv.Itoa(p)
	}
	ps := "{ " + strings.Join(set, ", ") + " }"
	ruleset := fmt.Sprintf(`table inet %[1]s {
	counter dropped_udp {}
	counter dropped_tcp {}
	counter dropped_other {}
	chain output {
		type filter hook output priority filter; policy drop;
		oifname "lo" accept
		%[2]s daddr %[3]s tcp dport %[4]s accept
		meta l4proto udp counter name dropped_udp drop
		meta l4proto tcp counter name dropped_tcp drop
		counter name dropped_other drop
	}
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept
		%[2]s saddr %[3]s tcp sport %[4]s accept
		meta l4proto udp counter name dropped_udp drop
		meta l4proto tcp counter name dropped_tcp drop
		counter name dropped_other drop
	}
}
`, firewallTable, family, addr, ps)
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("netns: load the firewall into %s: %v\n%s\n%s", ns, err, out, ruleset)
	}
	return &Firewall{l: l, ns: ns}
}

// Dropped returns the packets the firewall dropped so far, UDP and TCP
// (in and out).
func (f *Firewall) Dropped(t testing.TB) (udp, tcp int) {
	t.Helper()
	out := f.l.Output(t, f.ns, "nft", "-j", "list", "counters", "table", "inet", firewallTable)
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets int    `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("netns: read the firewall's counters: %v\n%s", err, out)
	}
	for _, o := range doc.Nftables {
		switch {
		case o.Counter == nil:
		case o.Counter.Name == "dropped_udp":
			udp = o.Counter.Packets
		case o.Counter.Name == "dropped_tcp":
			tcp = o.Counter.Packets
		}
	}
	return udp, tcp
}
