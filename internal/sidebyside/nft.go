package sidebyside

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// The nftables table the runner owns in its namespace: one counter on the
// media ports' outgoing datagrams, one on their incoming ones.
const nftTable = "sidebyside"

type counter struct{ packets, bytes uint64 }

var portsRE = regexp.MustCompile(`^[0-9]{1,5}(-[0-9]{1,5})?$`)

// installCounters (re)creates the table for ports ("7882" or
// "7882-7883").
func installCounters(ports string) error {
	if !portsRE.MatchString(ports) {
		return fmt.Errorf("media ports %q: want PORT or FIRST-LAST", ports)
	}
	removeCounters()
	rules := fmt.Sprintf(`table inet %[1]s {
	chain out {
		type filter hook output priority 0; policy accept;
		udp sport %[2]s counter
	}
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %[2]s counter
	}
}
`, nftTable, ports)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: install counters: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func removeCounters() {
	_ = exec.Command("nft", "delete", "table", "inet", nftTable).Run()
}

func readCounters() (out, in counter, err error) {
	b, err := exec.Command("nft", "-j", "list", "table", "inet", nftTable).Output()
	if err != nil {
		return out, in, fmt.Errorf("nft: read counters: %w", err)
	}
	return parseCounters(b)
}

// parseCounters reads the counters of chains "out" and "in" from nft's
// JSON listing.
func parseCounters(b []byte) (out, in counter, err error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Chain string `json:"chain"`
				Expr  []struct {
					Counter *struct {
						Packets uint64 `json:"packets"`
						Bytes   uint64 `json:"bytes"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return out, in, fmt.Errorf("nft: read counters: %w", err)
	}
	found := 0
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, x := range o.Rule.Expr {
			if x.Counter == nil {
				continue
			}
			c := counter{x.Counter.Packets, x.Counter.Bytes}
			switch o.Rule.Chain {
			case "out":
				out = c
				found |= 1
			case "in":
				in = c
				found |= 2
			}
		}
	}
	if found != 3 {
		return out, in, errors.New("nft: the counters of table " + nftTable + " are missing")
	}
	return out, in, nil
}
