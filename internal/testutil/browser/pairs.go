package browser

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// PairEnd is one side of a selected ICE candidate pair.
type PairEnd struct {
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Type     string `json:"type"`     // host, srflx, prflx, relay
	Protocol string `json:"protocol"` // udp, tcp
	// RelayProtocol is how a relay candidate reaches its TURN server:
	// udp, tcp or tls (empty for other types).
	RelayProtocol string `json:"relayProtocol,omitempty"`
}

// String formats the end as "127.0.0.1:40000 (host udp)", or
// "127.0.0.1:40000 (relay udp over tls)".
func (e PairEnd) String() string {
	s := fmt.Sprintf("%s (%s %s", netip.AddrPortFrom(addrOf(e.Address), uint16(e.Port)), e.Type, e.Protocol)
	if e.RelayProtocol != "" {
		s += " over " + e.RelayProtocol
	}
	return s + ")"
}

func addrOf(s string) netip.Addr {
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// Pair is a selected ICE candidate pair of one of the page's peer
// connections: the page's end and the server's.
type Pair struct {
	Local  PairEnd `json:"local"`
	Remote PairEnd `json:"remote"`
}

// String formats the pair as "local <-> remote".
func (p Pair) String() string { return p.Local.String() + " <-> " + p.Remote.String() }

// Pairs is what a page knows of its selected candidate pairs.
type Pairs struct {
	// Connected counts the page's peer connections that reached the
	// connected state.
	Connected int `json:"connected"`
	// Pairs are the selected pairs seen when a peer connection connected
	// and those of the peer connections still open.
	Pairs []Pair `json:"pairs"`
	// Unseen counts the peer connections that are connected now and
	// whose selected pair was never seen: those are what CheckPairs
	// refuses.
	Unseen int `json:"unseen"`
	// Gone counts the peer connections that connected and then closed or
	// failed before their selected pair could be read (a server restart
	// right after a join): nothing is left to read of them.
	Gone int `json:"gone"`
}

// pairsJS resolves to the page's Pairs: those recorded by the
// instrumentation (instrumentJS) and those of the open peer connections.
const pairsJS = `(async () => {
  const all = Object.assign({}, window.__pairs || {});
  let unseen = 0, gone = 0;
  for (const pc of (window.__pcs || [])) {
    let seen = !!pc.__pairSeen;
    if (pc.connectionState !== 'closed' && window.__selectedPairs) {
      try {
        for (const p of await window.__selectedPairs(pc)) { all[JSON.stringify(p)] = p; seen = true; }
      } catch (e) { /* closed meanwhile */ }
    }
    if (!pc.__connectedOnce || seen) continue;
    if (pc.connectionState === 'connected') unseen++; else gone++;
  }
  return {connected: window.__connected || 0, pairs: Object.values(all), unseen, gone};
})()`

// currentPairsJS resolves to the selected pairs of the page's open peer
// connections now, one list per peer connection.
const currentPairsJS = `(async () => {
  const out = [];
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed' || !window.__selectedPairs) continue;
    try { out.push(await window.__selectedPairs(pc)); } catch (e) { /* closed meanwhile */ }
  }
  return out;
})()`

// CurrentPairs returns the pairs the page's open peer connections have
// selected now (an ICE agent may switch to a better pair after the first
// it connected over, which SelectedPairs also keeps), one list per peer
// connection.
func (p *Page) CurrentPairs() ([][]Pair, error) {
	var out [][]Pair
	if err := p.Eval(currentPairsJS, &out); err != nil {
		return nil, fmt.Errorf("current candidate pairs: %w", err)
	}
	return out, nil
}

// SelectedPairs returns the selected candidate pairs of the page's peer
// connections.
func (p *Page) SelectedPairs() (Pairs, error) {
	var out Pairs
	if err := p.Eval(pairsJS, &out); err != nil {
		return Pairs{}, fmt.Errorf("selected candidate pairs: %w", err)
	}
	return out, nil
}

// CheckPairs fails the test unless every peer connection of the page that
// is connected has a selected candidate pair and both ends of every
// selected pair seen are on loopback (or allowed by [Browser.Allow]). A
// peer connection that closed before its pair could be read is logged. It
// returns the pairs.
func (p *Page) CheckPairs(t testing.TB) Pairs {
	t.Helper()
	return p.checkPairs(t)
}

func (p *Page) checkPairs(t testing.TB) Pairs {
	t.Helper()
	got, err := p.SelectedPairs()
	if err != nil {
		// The page is gone (navigated away, crashed): nothing to read.
		p.log.logf("[%s] selected candidate pairs not checked: %v", p.name, err)
		return got
	}
	if got.Unseen > 0 {
		t.Errorf("%s: %d peer connection(s) connected, but no selected candidate pair was seen", p.name, got.Unseen)
	}
	if got.Gone > 0 {
		p.log.logf("[%s] %d peer connection(s) connected and closed before their selected candidate pair could be read", p.name, got.Gone)
	}
	var bad, ok []string
	for _, pair := range got.Pairs {
		if p.b.allows(addrOf(pair.Local.Address)) && p.b.allows(addrOf(pair.Remote.Address)) {
			ok = append(ok, pair.String())
		} else {
			bad = append(bad, pair.String())
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s (%s): selected candidate pairs off loopback (test traffic must stay on 127.0.0.1/::1 or the test's own namespaces): %s",
			p.name, p.b.name, strings.Join(bad, "; "))
	}
	if len(ok) > 0 {
		p.log.logf("[%s] selected candidate pairs (%s): %s", p.name, p.b.name, strings.Join(ok, "; "))
	}
	return got
}
