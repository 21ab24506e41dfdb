package server

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"conclave/internal/cascade"
	"conclave/internal/config"
	"conclave/internal/nodeca"
	"conclave/internal/nodeconf"
)

// overloaded is the load above which a node is not given more
// participants when another can take them.
const overloaded = 0.85

// director applies the node selection policy (meeting.Director) from
// the nodes' status on the bus and the links of the mesh: a node is a
// candidate when it is linked to this one, heard from recently and not
// draining. With the bus down, no status is fresh: participants stay on
// the node they reached, and fall back to the linked nodes.
type director struct {
	self string
	// edge: this node is an edge node, whose participants come from
	// outside: it directs them only to edge nodes; internal nodes never
	// direct theirs to an edge.
	edge     bool
	selfURL  string
	mesh     *cascade.Mesh
	nodes    *nodeTable
	policy   func() nodeconf.Policy
	draining func() bool
	load     func() float64
	now      func() time.Time
}

// candidate is a node a participant may be sent to.
type candidate struct {
	name, url    string
	labels       []string
	load         float64
	participants int
	self         bool
}

// candidates lists this node (unless draining) and the linked nodes with
// a fresh status that are not draining.
func (d *director) candidates() []candidate {
	var out []candidate
	statuses := map[string]NodeState{}
	for _, st := range d.nodes.list(d.now()) {
		statuses[st.Name] = st
	}
	if !d.draining() {
		c := candidate{name: d.self, url: d.selfURL, load: d.load(), self: true}
		if st, ok := statuses[d.self]; ok {
			c.labels, c.participants = st.Labels, st.Participants
		}
		out = append(out, c)
	}
	for name, p := range d.mesh.Peers() {
		st, ok := statuses[name]
		if !ok || !st.Up || st.Draining || p.URL == "" || (p.Role == nodeca.RoleEdge) != d.edge {
			continue
		}
		out = append(out, candidate{name: name, url: p.URL, labels: st.Labels, load: st.Load, participants: st.Participants})
	}
	return out
}

// Direct implements meeting.Director.
func (d *director) Direct(alias string, addr netip.Addr, hosting []string) string {
	p := d.policy()
	if p.Selection == "" || p.Selection == nodeconf.SelectLocal {
		if !d.draining() {
			return ""
		}
	}
	cs := d.candidates()
	if len(cs) == 0 {
		return ""
	}
	if p.Selection == nodeconf.SelectLocation {
		if label := p.LabelOf(addr); label != "" {
			if near := filter(cs, func(c candidate) bool { return slices.Contains(c.labels, label) }); len(near) > 0 {
				cs = near
			}
		}
	}
	// A node that hosts the meeting already, if it is not overloaded:
	// fewer relays.
	if there := filter(cs, func(c candidate) bool { return slices.Contains(hosting, c.name) && c.load < overloaded }); len(there) > 0 {
		cs = there
	}
	best := slices.MinFunc(cs, func(a, b candidate) int {
		switch {
		case a.load < b.load-0.05:
			return -1
		case b.load < a.load-0.05:
			return 1
		case a.participants != b.participants:
			return a.participants - b.participants
		case a.self != b.self:
			if a.self {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	if best.self {
		return ""
	}
	return best.url
}

// Alternatives implements meeting.Director: the linked nodes, those
// hosting the meeting first, then the least loaded.
func (d *director) Alternatives(alias string, hosting []string) []string {
	cs := filter(d.candidates(), func(c candidate) bool { return !c.self })
	// Linked nodes without a fresh status (bus down) still make
	// fallbacks.
	known := map[string]bool{}
	for _, c := range cs {
		known[c.name] = true
	}
	for name, p := range d.mesh.Peers() {
		if !known[name] && p.URL != "" && (p.Role == nodeca.RoleEdge) == d.edge {
			cs = append(cs, candidate{name: name, url: p.URL, load: 1})
		}
	}
	slices.SortFunc(cs, func(a, b candidate) int {
		ah, bh := slices.Contains(hosting, a.name), slices.Contains(hosting, b.name)
		switch {
		case ah != bh:
			if ah {
				return -1
			}
			return 1
		case a.load != b.load:
			if a.load < b.load {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.url)
	}
	return out
}

func filter(cs []candidate, keep func(candidate) bool) []candidate {
	var out []candidate
	for _, c := range cs {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// policyOf reads the management node's --node-selection and --location.
func policyOf(c config.Cluster) (nodeconf.Policy, error) {
	p := nodeconf.Policy{Selection: c.Selection}
	switch c.Selection {
	case "", nodeconf.SelectLocal, nodeconf.SelectLeastLoaded, nodeconf.SelectLocation:
	default:
		return p, fmt.Errorf("--node-selection %q is not one of local, least-loaded, location", c.Selection)
	}
	if p.Selection == "" {
		p.Selection = nodeconf.SelectLocal
	}
	for _, s := range c.Locations {
		l, err := nodeconf.ParseLocation(s)
		if err != nil {
			return p, fmt.Errorf("--location: %w", err)
		}
		p.Locations = append(p.Locations, l)
	}
	return p, nil
}
