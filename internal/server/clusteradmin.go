package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"conclave/internal/bus"
	"conclave/internal/nodeca"
	"conclave/internal/store"
	"conclave/internal/web"
)

// clusterAdmin is the management API's view of the cluster
// (web.ClusterAdmin).
type clusterAdmin struct{ s *Server }

// Nodes implements web.ClusterAdmin.
func (a clusterAdmin) Nodes(ctx context.Context) ([]web.NodeView, error) {
	s := a.s
	c := s.cl
	nodes, err := s.store.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	statuses := map[string]NodeState{}
	for _, st := range c.nodes.list(s.clock.Now()) {
		statuses[st.Name] = st
	}
	own := c.listener.Certificate().Leaf
	out := []web.NodeView{{Name: "management", Role: nodeca.RoleManagement, CertSerial: nodeca.SerialOf(own), CertExpiry: own.NotAfter.UTC()}}
	for _, n := range nodes {
		v := web.NodeView{Name: n.Name, Role: n.Role, Labels: n.Labels, EnrolledAt: n.EnrolledAt.UTC(), RemovedAt: n.RemovedAt.UTC()}
		if certs, err := s.store.NodeCerts(ctx, n.Name); err == nil && len(certs) > 0 {
			v.CertSerial, v.CertExpiry = certs[0].Serial, certs[0].NotAfter.UTC()
		}
		out = append(out, v)
	}
	for i := range out {
		st, ok := statuses[out[i].Name]
		if !ok {
			continue
		}
		out[i].Status = &web.NodeStatus{Up: st.Up, Heard: st.Heard.UTC(), Version: st.Version, URL: st.URL, Load: st.Load,
			Meetings: st.Meetings, Participants: st.Participants, Draining: st.Draining, ConfigRevision: st.ConfigRevision,
			Spooled: st.Spooled, Labels: st.Labels}
		if out[i].Name == "management" {
			out[i].Status.Linked = c.mesh.LinkedNodes()
		}
		if !st.CertExpiry.IsZero() {
			out[i].CertExpiry = st.CertExpiry.UTC()
		}
	}
	slices.SortStableFunc(out[1:], func(x, y web.NodeView) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// AddNode implements web.ClusterAdmin.
func (a clusterAdmin) AddNode(ctx context.Context, req web.AddNode, by string) (web.Enrolment, error) {
	c := a.s.cl
	if req.Role == "" {
		req.Role = nodeca.RoleConference
	}
	if err := nodeca.ValidName(req.Name); err != nil {
		return web.Enrolment{}, &web.BadRequest{Err: err}
	}
	if err := nodeca.ValidRole(req.Role); err != nil {
		return web.Enrolment{}, &web.BadRequest{Err: err}
	}
	mgmt := req.Management
	if mgmt == "" {
		_, port, _ := net.SplitHostPort(c.listener.Addr().String())
		mgmt = net.JoinHostPort(c.hosts[0], port)
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl == 0 {
		ttl = nodeca.TokenLifetime
	}
	tok, err := c.ca.NewToken(ctx, req.Name, req.Role, req.Labels, by, ttl)
	if err != nil {
		return web.Enrolment{}, err
	}
	return web.Enrolment{Name: req.Name, Token: tok, CAPin: c.ca.Fingerprint(), Expires: a.s.clock.Now().Add(ttl).UTC(),
		Command: fmt.Sprintf("conclave node enrol -management %s -token %s -ca-pin %s", mgmt, tok, c.ca.Fingerprint())}, nil
}

// RemoveNode implements web.ClusterAdmin.
func (a clusterAdmin) RemoveNode(ctx context.Context, name string) error {
	c := a.s.cl
	if err := c.ca.Remove(ctx, name); err != nil {
		return err
	}
	if err := c.ca.RefreshRevoked(ctx); err != nil {
		return err
	}
	a.s.ConfigChanged()
	return nil
}

// Drain implements web.ClusterAdmin.
func (a clusterAdmin) Drain(ctx context.Context, name string, on bool) error {
	s := a.s
	c := s.cl
	if name == "management" {
		if c.draining.Swap(on) != on {
			s.log.Info("cluster: draining", "on", on)
		}
		if on {
			s.meetings.Drain()
		}
		return nil
	}
	up := false
	for _, st := range c.nodes.list(s.clock.Now()) {
		up = up || st.Name == name && st.Up
	}
	if !up {
		return store.ErrNotFound
	}
	arg := "on"
	if !on {
		arg = "off"
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.nc.RequestWithContext(rctx, bus.CommandSubject(name, bus.CommandDrain), []byte(arg)); err != nil {
		return fmt.Errorf("drain %s: %w", name, err)
	}
	return nil
}

// configStore is the management store as the API changes it: a change
// of a room is published to the conference nodes at once.
type configStore struct {
	store.Store
	changed func()
}

func (c configStore) CreateRoom(ctx context.Context, r store.Room) (store.Room, error) {
	out, err := c.Store.CreateRoom(ctx, r)
	c.changed()
	return out, err
}

func (c configStore) UpdateRoom(ctx context.Context, r store.Room) error {
	err := c.Store.UpdateRoom(ctx, r)
	c.changed()
	return err
}

func (c configStore) DeleteRoom(ctx context.Context, alias string) error {
	err := c.Store.DeleteRoom(ctx, alias)
	c.changed()
	return err
}

func (c configStore) AddRoomMember(ctx context.Context, roomID, userID int64, role store.MemberRole) error {
	err := c.Store.AddRoomMember(ctx, roomID, userID, role)
	c.changed()
	return err
}

func (c configStore) RemoveRoomMember(ctx context.Context, roomID, userID int64) error {
	err := c.Store.RemoveRoomMember(ctx, roomID, userID)
	c.changed()
	return err
}
