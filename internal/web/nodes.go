package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"conclave/internal/audit"
	"conclave/internal/perm"
	"conclave/internal/store"
)

// The nodes of a cluster in the management API (docs/cluster.md,
// docs/openapi.yaml tag "cluster").

// ClusterAdmin is what the management API asks of the cluster; nil when
// the server is not a cluster's management node (--cluster-listen).
type ClusterAdmin interface {
	// Nodes lists the enrolled nodes, removed ones included, and the
	// management node, with their latest status.
	Nodes(ctx context.Context) ([]NodeView, error)
	// AddNode makes a one-time enrolment token for a new node.
	AddNode(ctx context.Context, req AddNode, by string) (Enrolment, error)
	// RemoveNode removes a node and revokes its certificates
	// (store.ErrNotFound for an unknown node).
	RemoveNode(ctx context.Context, name string) error
	// Drain starts (on) or ends draining a node (store.ErrNotFound for a
	// node that is not up).
	Drain(ctx context.Context, name string, on bool) error
}

// AddNode is the body of POST /api/nodes.
type AddNode struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Labels string `json:"labels"`
	// Management is the cluster listener as the node reaches it; empty
	// means the server's own idea of it.
	Management string `json:"management"`
	// TTLSeconds is how long the token is valid (0: 24 hours).
	TTLSeconds int `json:"ttlSeconds"`
}

// Enrolment is the answer to POST /api/nodes.
type Enrolment struct {
	Name    string    `json:"name"`
	Token   string    `json:"token"`
	CAPin   string    `json:"caPin"`
	Expires time.Time `json:"expires"`
	// Command is the command to run on the node.
	Command string `json:"command"`
}

// NodeView is a node as the API shows it.
type NodeView struct {
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Labels     string    `json:"labels,omitempty"`
	EnrolledAt time.Time `json:"enrolledAt,omitzero"`
	RemovedAt  time.Time `json:"removedAt,omitzero"`
	// Certificate is the node's newest certificate.
	CertSerial string    `json:"certSerial,omitempty"`
	CertExpiry time.Time `json:"certExpiry,omitzero"`
	// Status is what the node last said on the bus; nil when never heard.
	Status *NodeStatus `json:"status,omitempty"`
}

// NodeStatus is a node's latest status.
type NodeStatus struct {
	// Up: heard from within the last 5 seconds.
	Up             bool      `json:"up"`
	Heard          time.Time `json:"heard"`
	Version        string    `json:"version"`
	URL            string    `json:"url,omitempty"`
	Load           float64   `json:"load"`
	Meetings       int       `json:"meetings"`
	Participants   int       `json:"participants"`
	Draining       bool      `json:"draining"`
	ConfigRevision uint64    `json:"configRevision"`
	// Labels are the location labels the node applies now: those of its
	// copy of the configuration, which node selection by location uses
	// (they follow NodeView.Labels within a publication round).
	Labels  []string `json:"labels,omitempty"`
	Spooled int      `json:"spooled"`
	Linked  []string `json:"linked,omitempty"`
}

func (s *Server) clusterRoutes(m func(method, path string, p perm.Permission, h ManageFunc) Route) []Route {
	return []Route{
		m("GET", "/api/nodes", perm.SystemView, s.apiNodes),
		m("POST", "/api/nodes", perm.SystemManage, s.apiAddNode),
		m("DELETE", "/api/nodes/{name}", perm.SystemManage, s.apiRemoveNode),
		m("POST", "/api/nodes/{name}/drain", perm.SystemManage, s.apiDrainNode),
	}
}

// cluster answers 404 when the server is not a cluster.
func (s *Server) cluster(w http.ResponseWriter) bool {
	if s.Cluster == nil {
		writeError(w, http.StatusNotFound, "not-a-cluster", "This server is not a cluster's management node: start it with --cluster-listen (docs/cluster.md).")
		return false
	}
	return true
}

func (s *Server) apiNodes(w http.ResponseWriter, r *http.Request, _ store.User) {
	if !s.cluster(w) {
		return
	}
	nodes, err := s.Cluster.Nodes(r.Context())
	if err != nil {
		s.log.Error("list nodes failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not list the nodes.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

func (s *Server) apiAddNode(w http.ResponseWriter, r *http.Request, u store.User) {
	if !s.cluster(w) {
		return
	}
	var req AddNode
	if !readJSON(w, r, &req) {
		return
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > 30*24*3600 {
		writeError(w, http.StatusBadRequest, "invalid-ttl", "The token's lifetime must be between 0 (24 hours) and 30 days.")
		return
	}
	e, err := s.Cluster.AddNode(r.Context(), req, u.Username)
	var bad *BadRequest
	if errors.As(err, &bad) {
		writeError(w, http.StatusBadRequest, "invalid-node", bad.Error())
		return
	}
	if err != nil {
		s.log.Error("add node failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not make the enrolment token.")
		return
	}
	s.recordOp(r, u, "node-enrolment-created", audit.OutcomeSuccess, req.Name, map[string]string{"role": req.Role, "labels": req.Labels})
	writeJSON(w, http.StatusCreated, e)
}

func (s *Server) apiRemoveNode(w http.ResponseWriter, r *http.Request, u store.User) {
	if !s.cluster(w) {
		return
	}
	name := r.PathValue("name")
	err := s.Cluster.RemoveNode(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "node-not-found", "No node of this name is part of the cluster.")
		return
	}
	if err != nil {
		s.log.Error("remove node failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not remove the node.")
		return
	}
	s.recordOp(r, u, "node-removed", audit.OutcomeSuccess, name, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiDrainNode(w http.ResponseWriter, r *http.Request, u store.User) {
	if !s.cluster(w) {
		return
	}
	var req struct {
		On *bool `json:"on"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.On == nil {
		writeError(w, http.StatusBadRequest, "invalid-field", "Say \"on\": true to drain the node, false to end draining.")
		return
	}
	name := r.PathValue("name")
	err := s.Cluster.Drain(r.Context(), name, *req.On)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "node-not-found", "No node of this name is up: it cannot be drained.")
		return
	}
	if err != nil {
		s.log.Error("drain node failed", "err", err)
		writeError(w, http.StatusBadGateway, "node-unreachable", "The node did not answer the drain command; try again.")
		return
	}
	action := "node-drained"
	if !*req.On {
		action = "node-undrained"
	}
	s.recordOp(r, u, action, audit.OutcomeSuccess, name, nil)
	w.WriteHeader(http.StatusNoContent)
}

// BadRequest is an error of the caller's making, with a sentence that
// says what to change.
type BadRequest struct{ Err error }

func (e *BadRequest) Error() string { return e.Err.Error() }
func (e *BadRequest) Unwrap() error { return e.Err }
