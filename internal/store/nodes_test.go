package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestNodeStore(t *testing.T) { forEachEngine(t, testNodeStore) }

func testNodeStore(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	tok := NodeToken{TokenHash: bytes.Repeat([]byte{5}, 32), Name: "paris-1", Role: "conference", Labels: "paris",
		CreatedBy: "root", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateNodeToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeNodeToken(ctx, tok.TokenHash, t0.Add(2*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token = %v, want ErrNotFound", err)
	}
	got, err := s.ConsumeNodeToken(ctx, tok.TokenHash, t0.Add(time.Minute))
	if err != nil || got.Name != "paris-1" || got.Labels != "paris" || !got.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("ConsumeNodeToken = %+v, %v", got, err)
	}
	if _, err := s.ConsumeNodeToken(ctx, tok.TokenHash, t0.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Errorf("second use = %v, want ErrNotFound", err)
	}

	n := Node{Name: "paris-1", Role: "conference", Labels: "paris", EnrolledAt: t0}
	c1 := NodeCert{Serial: "01", Node: "paris-1", IssuedAt: t0, NotAfter: t0.Add(30 * 24 * time.Hour), DER: []byte{1}}
	if err := s.EnrolNode(ctx, n, c1); err != nil {
		t.Fatal(err)
	}
	if err := s.EnrolNode(ctx, n, NodeCert{Serial: "02", Node: "paris-1", IssuedAt: t0, NotAfter: t0, DER: []byte{2}}); !errors.Is(err, ErrExists) {
		t.Errorf("second enrolment of a member = %v, want ErrExists", err)
	}
	c2 := NodeCert{Serial: "03", Node: "paris-1", IssuedAt: t0.Add(time.Hour), NotAfter: t0.Add(31 * 24 * time.Hour), DER: []byte{3}}
	if err := s.AddNodeCert(ctx, c2); err != nil {
		t.Fatal(err)
	}
	certs, err := s.NodeCerts(ctx, "paris-1")
	if err != nil || len(certs) != 2 || certs[0].Serial != "03" {
		t.Errorf("NodeCerts = %+v, %v; want newest first", certs, err)
	}
	if err := s.RemoveNode(ctx, "paris-1", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNode(ctx, "paris-1", t0.Add(3*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("second removal = %v, want ErrNotFound", err)
	}
	revoked, err := s.RevokedNodeCerts(ctx, t0.Add(3*time.Hour))
	if err != nil || len(revoked) != 2 {
		t.Errorf("RevokedNodeCerts = %+v, %v; want both certificates", revoked, err)
	}
	if got, err := s.NodeByName(ctx, "paris-1"); err != nil || !got.RemovedAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("NodeByName after removal = %+v, %v", got, err)
	}
	// A removed node's name can be enrolled again, with a new certificate.
	if err := s.EnrolNode(ctx, n, NodeCert{Serial: "04", Node: "paris-1", IssuedAt: t0, NotAfter: t0.Add(time.Hour), DER: []byte{4}}); err != nil {
		t.Errorf("re-enrolment after removal: %v", err)
	}
	if nodes, err := s.ListNodes(ctx); err != nil || len(nodes) != 1 || !nodes[0].RemovedAt.IsZero() {
		t.Errorf("ListNodes = %+v, %v", nodes, err)
	}
	if revoked, _ := s.RevokedNodeCerts(ctx, t0.Add(3*time.Hour)); len(revoked) != 2 {
		t.Errorf("re-enrolment cleared the revocations: %+v", revoked)
	}
}
