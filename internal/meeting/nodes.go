package meeting

import (
	"context"
	"net/netip"
	"strings"

	"conclave/internal/signal"
)

// Which node a participant uses (docs/cluster.md, "Which node").

// Director chooses nodes for participants: the server implements it
// from the cluster's policy and the nodes' status.
type Director interface {
	// Direct returns the base URL of the node a participant joining room
	// alias from addr should use, or "" for this node. hosting names
	// the nodes that have members in the meeting now (this one
	// included, if so). While this node drains, it names another node
	// whenever one can take the participant.
	Direct(alias string, addr netip.Addr, hosting []string) string
	// Alternatives returns the base URLs of the other nodes, best
	// first, where a participant of room alias reconnects if this node
	// fails.
	Alternatives(alias string, hosting []string) []string
}

// Tickets issues admission tickets (internal/ticket): the management
// node's, which holds the accounts. A signed-in participant it sends to
// another node carries one there, so that the node admits it with its
// account and the role decided here.
type Tickets interface {
	// Issue returns a ticket for acct to enter the meeting meetingID
	// ("" if none is in progress) of the room adm admits to, with adm's
	// role, on the node whose base URL is nodeURL.
	Issue(nodeURL, meetingID string, acct Account, adm Admission) (string, error)
}

// SetTickets sets the issuer of admission tickets; call it before the
// first participant arrives. Without one, signed-in participants are
// sent to other nodes without a ticket (and enter there as guests do).
func (m *Manager) SetTickets(t Tickets) { m.tickets = t }

// ticketFor lets the gate decide the role of a signed-in participant
// sent to the node at url, and returns a ticket that carries it there
// ("" for a participant without an account). A refusal is the join's
// answer here: the participant is not sent anywhere.
func (m *Manager) ticketFor(ctx context.Context, msg *signal.Message, client Client, url string) (string, error) {
	if client.Account == nil || m.tickets == nil {
		return "", nil
	}
	adm, err := m.enter(ctx, Entry{Room: msg.Room, PIN: msg.PIN, Account: client.Account, Addr: client.Addr})
	if err != nil {
		return "", err
	}
	meetingID := ""
	m.mu.Lock()
	if r := m.active[strings.ToLower(adm.Alias)]; r != nil {
		r.mu.Lock()
		meetingID = r.id
		r.mu.Unlock()
	}
	m.mu.Unlock()
	t, err := m.tickets.Issue(url, meetingID, *client.Account, adm)
	if err != nil {
		m.log.Error("cannot issue an admission ticket", "room", adm.Alias, "err", err)
		return "", signal.Fatalf(signal.CodeInternal, "The server could not send you to the meeting's node. Try again later.")
	}
	return t, nil
}

// Reasons of a redirect message.
const (
	// RedirectSelection: the cluster's policy prefers another node.
	RedirectSelection = "node-selection"
	// RedirectDraining: this node is being emptied for maintenance.
	RedirectDraining = "draining"
)

// SetDirector sets the director; call it before the first participant
// arrives.
func (m *Manager) SetDirector(d Director) { m.cfg.Director = d }

// direct returns where a join should go instead of this node, or "".
// A join that resumes or takes over a participant, or follows a redirect
// already, stays.
func (m *Manager) direct(msg *signal.Message, client Client) string {
	d := m.cfg.Director
	if d == nil || msg.Resume != "" || msg.Redirected || msg.Ticket != "" {
		return ""
	}
	return d.Direct(msg.Room, client.Addr, m.hosting(msg.Room))
}

// hosting names the nodes with members in room alias's meeting.
func (m *Manager) hosting(alias string) []string {
	m.mu.Lock()
	r := m.active[strings.ToLower(alias)]
	m.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.hosting()
}

func (r *Room) hosting() []string {
	seen := map[string]bool{}
	var out []string
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) > 0 {
		if f := r.mgr.federation(); f != nil {
			seen[f.Self()] = true
			out = append(out, f.Self())
		}
	}
	for _, x := range r.remote {
		if x.admitted() && !seen[x.node] {
			seen[x.node] = true
			out = append(out, x.node)
		}
	}
	return out
}

// alternatives lists the nodes a member of r falls back to.
func (m *Manager) alternatives(r *Room) []string {
	d := m.cfg.Director
	if d == nil {
		return nil
	}
	// Called with r's lock held (welcome): hosting is read here.
	seen := map[string]bool{}
	var hosting []string
	for _, x := range r.remote {
		if x.admitted() && !seen[x.node] {
			seen[x.node] = true
			hosting = append(hosting, x.node)
		}
	}
	return d.Alternatives(r.alias, hosting)
}

// Drain sends every participant of this node to another node (a
// redirect each, with the node the director names), for maintenance;
// participants whose client does not move stay until they leave. It
// returns how many were sent away.
func (m *Manager) Drain() int {
	d := m.cfg.Director
	if d == nil {
		return 0
	}
	n := 0
	for _, r := range m.rooms() {
		hosting := r.hosting()
		for _, p := range r.everyone() {
			url := d.Direct(r.alias, p.addr, hosting)
			if url == "" {
				continue
			}
			p.send(&signal.Message{Type: signal.TypeRedirect, URL: url, Reason: RedirectDraining})
			n++
		}
	}
	return n
}
