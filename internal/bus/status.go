package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Status is what a node publishes on StatusSubject every StatusInterval:
// the management node keeps the latest of each node for the admin API and
// page, and the nodes use each other's to direct participants.
type Status struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Labels  []string `json:"labels,omitempty"`
	Version string   `json:"version"`
	// URL is the node's HTTPS address for browsers (web client and
	// signaling); Relay its node-to-node listener (host:port).
	URL   string `json:"url,omitempty"`
	Relay string `json:"relay,omitempty"`
	// Meetings and Participants hosted here now; Load is the process's
	// CPU use over the last interval, in cores, divided by the machine's
	// cores (0..1).
	Meetings     int     `json:"meetings"`
	Participants int     `json:"participants"`
	Load         float64 `json:"load"`
	// Draining: the node takes no new participants and moves its own to
	// other nodes (conclave node drain).
	Draining bool `json:"draining,omitempty"`
	// CertExpiry is when the node certificate expires.
	CertExpiry time.Time `json:"certExpiry"`
	// ConfigRevision is the revision of the configuration bucket the node
	// has applied; Spooled the audit entries and records it still holds
	// for the management node.
	ConfigRevision uint64    `json:"configRevision"`
	Spooled        int       `json:"spooled"`
	Started        time.Time `json:"started"`
	Time           time.Time `json:"time"`
}

// StatusInterval is how often a node publishes its status; a node not
// heard from for StatusStale is considered down.
const (
	StatusInterval = time.Second
	StatusStale    = 5 * time.Second
)

// PublishStatus publishes s on its node's subject.
func PublishStatus(nc *nats.Conn, s Status) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return nc.Publish(StatusSubject(s.Name), data)
}

// DecodeStatus reads a status message, checking that it names the node
// whose subject it came on (the server lets a node publish only under its
// own name, so the subject is the proof).
func DecodeStatus(m *nats.Msg) (Status, error) {
	var s Status
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return Status{}, fmt.Errorf("status on %s: %w", m.Subject, err)
	}
	if StatusSubject(s.Name) != m.Subject {
		return Status{}, fmt.Errorf("status on %s names node %q", m.Subject, s.Name)
	}
	return s, nil
}

// Setup makes (or updates) the JetStream resources of the cluster: the
// configuration bucket and the spool stream, with Replicas(nc) copies.
// The management node calls it when it connects.
func Setup(ctx context.Context, nc *nats.Conn) (jetstream.KeyValue, jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	replicas := Replicas(nc)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ConfigBucket,
		Description: "Conclave: what conference nodes need to admit participants",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("configuration bucket: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        SpoolStream,
		Description: "Conclave: audit entries and call records delivered by nodes",
		Subjects:    []string{NodePrefix + "*.spool"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  time.Hour,
		MaxAge:      90 * 24 * time.Hour,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("spool stream: %w", err)
	}
	return kv, js, nil
}

// ConfigBucketOf opens the configuration bucket for reading (nodes).
func ConfigBucketOf(ctx context.Context, nc *nats.Conn) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, ConfigBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("the management node has not published the configuration yet: %w", err)
	}
	return kv, err
}

// Replicas is how many copies the cluster's JetStream resources keep: 3
// on an external NATS cluster of three servers or more (the servers it
// knows when Setup runs: connected and discovered), so that losing one
// loses neither the configuration nor the spool; 1 on a single server
// (the embedded one).
func Replicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() != "" && 1+len(nc.DiscoveredServers()) >= 3 {
		return 3
	}
	return 1
}
