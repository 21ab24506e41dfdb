package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"conclave/internal/audit"
	"conclave/internal/bus"
)

// retryDelay is how long the shipper waits after a failed delivery.
const retryDelay = time.Second

// Ship delivers the spool's entries as node name on the bus until ctx
// ends, in order, each until the stream acknowledges it. While the bus is
// unreachable it retries every second; entries keep arriving in the spool
// meanwhile.
func (s *Spool) Ship(ctx context.Context, nc *nats.Conn, name string, log *slog.Logger) {
	js, err := jetstream.New(nc)
	if err != nil {
		log.Error("cluster: the spool cannot use the bus", "err", err)
		return
	}
	subject := bus.SpoolSubject(name)
	failing := false
	for {
		e, ok := s.peek()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		data, err := json.Marshal(e)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = js.Publish(pctx, subject, data, jetstream.WithMsgID(name+"-"+strconv.FormatUint(e.Seq, 10)))
			cancel()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				log.Warn("cluster: the management node does not take the spooled audit entries yet; they stay on this node's disk",
					"pending", s.Pending(), "err", err)
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryDelay):
			}
			continue
		}
		if failing {
			log.Info("cluster: delivering the spooled audit entries again", "pending", s.Pending())
			failing = false
		}
		if err := s.ack(e.Seq); err != nil {
			log.Error("cluster: recording a delivered spool entry failed", "err", err)
		}
	}
}

// consumerName is the management node's durable consumer of the spool.
const consumerName = "management"

// Consume takes the nodes' entries from the spool stream until ctx ends
// and writes them into rec, acknowledging each once written. Each audit
// event keeps its time, and gets the delivering node's name (from the
// subject, which only that node may publish on) in its details.
func Consume(ctx context.Context, js jetstream.JetStream, rec audit.Recorder, log *slog.Logger) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.SpoolStream, jetstream.ConsumerConfig{
		Durable:   consumerName,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("spool consumer: %w", err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(16, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				return err
			}
			time.Sleep(retryDelay)
			continue
		}
		for m := range batch.Messages() {
			if err := deliver(ctx, m, rec); err != nil {
				log.Error("cluster: a node's spooled entry could not be written; it is delivered again later", "subject", m.Subject(), "err", err)
				_ = m.Nak()
				continue
			}
			_ = m.Ack()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			log.Debug("cluster: spool fetch", "err", err)
		}
	}
	return nil
}

// deliver writes one message's entry; a malformed entry is dropped with
// an error in the management node's own audit log.
func deliver(ctx context.Context, m jetstream.Msg, rec audit.Recorder) error {
	node := nodeOf(m.Subject())
	var e Entry
	if err := json.Unmarshal(m.Data(), &e); err != nil || e.Audit == nil || node == "" {
		return rec.Record(ctx, audit.Event{Action: "node-spool-rejected", Target: node, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"reason": "malformed entry"}})
	}
	a := e.Audit
	details := map[string]string{}
	for k, v := range a.Details {
		details[k] = v
	}
	details["node"] = node
	return rec.Record(ctx, audit.Event{Time: a.Time, Actor: a.Actor, Source: a.Source, Action: a.Action, Target: a.Target,
		Outcome: a.Outcome, Details: details})
}

// nodeOf reads the node's name from a spool subject.
func nodeOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, bus.NodePrefix)
	if !ok {
		return ""
	}
	name, ok := strings.CutSuffix(rest, ".spool")
	if !ok || strings.Contains(name, ".") {
		return ""
	}
	return name
}
