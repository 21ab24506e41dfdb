package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// NodeToken is a one-time token with which a conference node enrols at
// the management node (docs/cluster.md). Only its SHA-256 hash is stored.
type NodeToken struct {
	TokenHash []byte
	// Name is the name the node will have; Role "conference" or "edge";
	// Labels its location labels, comma-separated.
	Name, Role, Labels string
	CreatedBy          string
	CreatedAt          time.Time
	ExpiresAt          time.Time
	UsedAt             time.Time // zero if unused
}

// Node is an enrolled node.
type Node struct {
	Name, Role, Labels string
	EnrolledAt         time.Time
	// RemovedAt is when an administrator removed the node (its
	// certificates are revoked then); zero while it is part of the cluster.
	RemovedAt time.Time
}

// NodeCert is a certificate issued to a node.
type NodeCert struct {
	Serial    string // lower-case hexadecimal
	Node      string
	IssuedAt  time.Time
	NotAfter  time.Time
	RevokedAt time.Time // zero unless revoked
	DER       []byte
}

// NodeStore keeps the cluster's nodes. *DB implements it.
type NodeStore interface {
	// CreateNodeToken stores a new, unused enrolment token.
	CreateNodeToken(ctx context.Context, t NodeToken) error
	// ConsumeNodeToken atomically marks the token as used at now and
	// returns it, provided it is unused and not expired at now; unknown,
	// used and expired tokens all yield ErrNotFound.
	ConsumeNodeToken(ctx context.Context, tokenHash []byte, now time.Time) (NodeToken, error)
	// EnrolNode records n and its first certificate c in one transaction;
	// ErrExists if a node of that name is part of the cluster. A removed
	// node of the same name comes back; its old certificates stay revoked.
	EnrolNode(ctx context.Context, n Node, c NodeCert) error
	// AddNodeCert records a renewed certificate of a node.
	AddNodeCert(ctx context.Context, c NodeCert) error
	// NodeByName returns a node.
	NodeByName(ctx context.Context, name string) (Node, error)
	// ListNodes returns every node, removed ones included, by name.
	ListNodes(ctx context.Context) ([]Node, error)
	// NodeCerts returns a node's certificates, newest first.
	NodeCerts(ctx context.Context, name string) ([]NodeCert, error)
	// RemoveNode marks a node removed at t and revokes its certificates.
	RemoveNode(ctx context.Context, name string, t time.Time) error
	// RevokedNodeCerts returns the revoked node certificates not yet
	// expired at now.
	RevokedNodeCerts(ctx context.Context, now time.Time) ([]NodeCert, error)
}

var _ NodeStore = (*DB)(nil)

// CreateNodeToken implements NodeStore.
func (s *DB) CreateNodeToken(ctx context.Context, t NodeToken) error {
	if len(t.TokenHash) == 0 {
		return errors.New("create node token: empty token hash")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO node_tokens
		(token_hash, name, role, labels, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.TokenHash, t.Name, t.Role, t.Labels, t.CreatedBy, toNanos(t.CreatedAt), toNanos(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create node token for %s: %w", t.Name, mapErr(err))
	}
	return nil
}

// ConsumeNodeToken implements NodeStore.
func (s *DB) ConsumeNodeToken(ctx context.Context, tokenHash []byte, now time.Time) (NodeToken, error) {
	n := toNanos(now)
	var (
		nt               NodeToken
		created, expires int64
		used             sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `UPDATE node_tokens SET used_at = ?
		WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?
		RETURNING token_hash, name, role, labels, created_by, created_at, expires_at, used_at`, n, tokenHash, n).
		Scan(&nt.TokenHash, &nt.Name, &nt.Role, &nt.Labels, &nt.CreatedBy, &created, &expires, &used)
	if err != nil {
		return NodeToken{}, fmt.Errorf("consume node token: %w", mapErr(err))
	}
	nt.CreatedAt, nt.ExpiresAt, nt.UsedAt = fromNanos(created), fromNanos(expires), fromNullNanos(used)
	return nt, nil
}

// EnrolNode implements NodeStore.
func (s *DB) EnrolNode(ctx context.Context, n Node, c NodeCert) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("enrol node %s: %w", n.Name, err)
	}
	defer tx.Rollback()
	var removed sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT removed_at FROM nodes WHERE name = ?`, n.Name).Scan(&removed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO nodes (name, role, labels, enrolled_at) VALUES (?, ?, ?, ?)`,
			n.Name, n.Role, n.Labels, toNanos(n.EnrolledAt))
	case err != nil:
	case !removed.Valid:
		err = ErrExists
	default:
		// The certificates of the removed node stay, revoked.
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET role = ?, labels = ?, enrolled_at = ?, removed_at = NULL WHERE name = ?`,
			n.Role, n.Labels, toNanos(n.EnrolledAt), n.Name)
	}
	if err != nil {
		return fmt.Errorf("enrol node %s: %w", n.Name, mapErr(err))
	}
	if err := insertNodeCert(ctx, tx, c); err != nil {
		return fmt.Errorf("enrol node %s: %w", n.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enrol node %s: %w", n.Name, err)
	}
	return nil
}

func insertNodeCert(ctx context.Context, x execer, c NodeCert) error {
	_, err := x.ExecContext(ctx, `INSERT INTO node_certs (serial, node, issued_at, not_after, der) VALUES (?, ?, ?, ?, ?)`,
		c.Serial, c.Node, toNanos(c.IssuedAt), toNanos(c.NotAfter), c.DER)
	return mapErr(err)
}

// AddNodeCert implements NodeStore.
func (s *DB) AddNodeCert(ctx context.Context, c NodeCert) error {
	if err := insertNodeCert(ctx, s.db, c); err != nil {
		return fmt.Errorf("record certificate of node %s: %w", c.Node, err)
	}
	return nil
}

const nodeColumns = `name, role, labels, enrolled_at, removed_at`

func scanNode(row interface{ Scan(...any) error }) (Node, error) {
	var (
		n        Node
		enrolled int64
		removed  sql.NullInt64
	)
	if err := row.Scan(&n.Name, &n.Role, &n.Labels, &enrolled, &removed); err != nil {
		return Node{}, mapErr(err)
	}
	n.EnrolledAt, n.RemovedAt = fromNanos(enrolled), fromNullNanos(removed)
	return n, nil
}

// NodeByName implements NodeStore.
func (s *DB) NodeByName(ctx context.Context, name string) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, name))
	if err != nil {
		return Node{}, fmt.Errorf("node %s: %w", name, err)
	}
	return n, nil
}

// ListNodes implements NodeStore.
func (s *DB) ListNodes(ctx context.Context) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (s *DB) queryNodeCerts(ctx context.Context, query string, args ...any) ([]NodeCert, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []NodeCert
	for rows.Next() {
		var (
			nc               NodeCert
			issued, notAfter int64
			revoked          sql.NullInt64
		)
		if err := rows.Scan(&nc.Serial, &nc.Node, &issued, &notAfter, &revoked, &nc.DER); err != nil {
			return nil, err
		}
		nc.IssuedAt, nc.NotAfter, nc.RevokedAt = fromNanos(issued), fromNanos(notAfter), fromNullNanos(revoked)
		out = append(out, nc)
	}
	return out, rows.Err()
}

// NodeCerts implements NodeStore.
func (s *DB) NodeCerts(ctx context.Context, name string) ([]NodeCert, error) {
	out, err := s.queryNodeCerts(ctx, `SELECT serial, node, issued_at, not_after, revoked_at, der FROM node_certs
		WHERE node = ? ORDER BY issued_at DESC, serial`, name)
	if err != nil {
		return nil, fmt.Errorf("certificates of node %s: %w", name, err)
	}
	return out, nil
}

// RemoveNode implements NodeStore.
func (s *DB) RemoveNode(ctx context.Context, name string, t time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE nodes SET removed_at = ? WHERE name = ? AND removed_at IS NULL`, toNanos(t), name)
	if err := checkOne(res, err); err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE node_certs SET revoked_at = ? WHERE node = ? AND revoked_at IS NULL`, toNanos(t), name); err != nil {
		return fmt.Errorf("remove node %s: revoke certificates: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	return nil
}

// RevokedNodeCerts implements NodeStore.
func (s *DB) RevokedNodeCerts(ctx context.Context, now time.Time) ([]NodeCert, error) {
	out, err := s.queryNodeCerts(ctx, `SELECT serial, node, issued_at, not_after, revoked_at, der FROM node_certs
		WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY revoked_at, serial`, toNanos(now))
	if err != nil {
		return nil, fmt.Errorf("revoked node certificates: %w", err)
	}
	return out, nil
}
