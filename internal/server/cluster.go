package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"conclave/internal/clock"
	"conclave/internal/nodeca"
)

// ClusterDir is the directory, inside the data directory, of the cluster
// CA (docs/cluster.md).
const ClusterDir = "cluster"

// revocationRefresh is how often the cluster listener rereads the revoked
// node certificates, so that a node removed from the shell is refused
// within that time.
const revocationRefresh = 10 * time.Second

// openCluster opens the cluster CA and listener when --cluster-listen is
// set.
func (s *Server) openCluster(clk clock.Clock, org string) error {
	if s.cfg.ClusterListen == "" {
		return nil
	}
	ca, err := nodeca.Open(filepath.Join(s.cfg.DataDir, ClusterDir), org, s.store, clk)
	if err != nil {
		return err
	}
	hosts := s.cfg.Hosts
	if len(hosts) == 0 {
		if h, _, err := net.SplitHostPort(s.cfg.ClusterListen); err == nil && h != "" {
			hosts = []string{h}
		} else {
			hosts = []string{firstAddress()}
		}
	}
	ln, err := nodeca.Listen(ca, s.cfg.ClusterListen, hosts, s.log)
	if err != nil {
		return fmt.Errorf("cluster listener on %s (--cluster-listen): %w", s.cfg.ClusterListen, err)
	}
	s.clusterCA, s.cluster = ca, ln
	return nil
}

// refreshRevocations rereads the revoked node certificates until ctx
// ends.
func (s *Server) refreshRevocations(ctx context.Context) {
	stop := clock.Every(s.clock, revocationRefresh, func() {
		if err := s.clusterCA.RefreshRevoked(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reading revoked node certificates failed", "err", err)
		}
	})
	<-ctx.Done()
	stop()
}

// ClusterAddr is the address of the cluster listener; nil without
// --cluster-listen.
func (s *Server) ClusterAddr() net.Addr {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.Addr()
}

// ClusterCA is the cluster's certificate authority; nil without
// --cluster-listen.
func (s *Server) ClusterCA() *nodeca.CA { return s.clusterCA }
