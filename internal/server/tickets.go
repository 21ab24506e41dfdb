package server

import (
	"fmt"
	"path/filepath"

	"conclave/internal/access"
	"conclave/internal/cascade"
	"conclave/internal/clock"
	"conclave/internal/meeting"
	"conclave/internal/ticket"
)

// Signed-in accounts on conference nodes (docs/cluster.md): the
// management node signs, into an admission ticket, the role its gate
// decided for a signed-in participant it sends to a conference node; the
// node's gate checks the ticket with the public key published with the
// configuration.

// openTickets loads (or makes) the management node's ticket key, sealed
// under the master key, makes its meetings issue tickets to the signed-in
// participants they send to other nodes, and its gate take tickets made
// out to it (none are; one presented is refused as for another node).
func (s *Server) openTickets(clk clock.Clock, gate *access.Gate) (*ticket.Issuer, error) {
	key, err := ticket.LoadKey(filepath.Join(s.cfg.DataDir, filepath.FromSlash(ticket.KeyFile)), s.ops.box)
	if err != nil {
		return nil, err
	}
	iss, err := ticket.NewIssuer(key, clk)
	if err != nil {
		return nil, err
	}
	pub := iss.PublicKey()
	gate.AcceptTickets(ticket.NewVerifier("management", func() []byte { return pub }, clk))
	s.meetings.SetTickets(&ticketIssuer{issuer: iss, mesh: s.cl.mesh})
	return iss, nil
}

// ticketIssuer implements meeting.Tickets for the management node.
type ticketIssuer struct {
	issuer *ticket.Issuer
	mesh   *cascade.Mesh
}

// Issue implements meeting.Tickets: the ticket names the node the
// director chose by its name, which its link to this node proved.
func (t *ticketIssuer) Issue(nodeURL, meetingID string, acct meeting.Account, adm meeting.Admission) (string, error) {
	node := ""
	for name, p := range t.mesh.Peers() {
		if p.URL == nodeURL {
			node = name
		}
	}
	if node == "" {
		return "", fmt.Errorf("no linked node serves %s", nodeURL)
	}
	return t.issuer.Issue(ticket.Claims{Room: adm.Alias, Meeting: meetingID, Node: node, Role: adm.Role.String(),
		Account: ticket.Account{ID: acct.ID, Username: acct.Username, Name: acct.DisplayName}})
}

// nodeTickets makes a conference node's gate take the tickets made out
// to it, checked with the management node's key from the configuration.
func nodeTickets(gate *access.Gate, name string, key func() []byte, clk clock.Clock) {
	gate.AcceptTickets(ticket.NewVerifier(name, key, clk))
}

// Linked returns the nodes the management node is linked to now; nil
// without --cluster-listen.
func (s *Server) Linked() []string {
	if s.cl == nil {
		return nil
	}
	return s.cl.mesh.LinkedNodes()
}
