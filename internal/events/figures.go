package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AsyncDepth is what Depth tells of one function's async events.
type AsyncDepth struct {
	// Pending counts the function's events not yet done (its messages in
	// the stream: queued, running or waiting for a retry).
	Pending int
	// Oldest is how long ago the event first in line in the stream was
	// first enqueued; 0 when there is none.
	Oldest time.Duration
}

// Depths returns what Depth returns for every function that has events
// in the stream, by the name they are kept under (NAME, or NAME:QUALIFIER
// for a version or an alias); a function with none is absent. It makes
// one JetStream request for every function's count and one for the first
// event of each function with events, and blocks for at most about two
// seconds. Errors: stratus.ErrUnavailable or ErrNoSpace while the bus is
// unhealthy or JetStream does not answer, or ctx's error.
func (q *Queue) Depths(ctx context.Context) (map[string]AsyncDepth, error) {
	if err := q.bus.Health(); err != nil {
		return nil, fmt.Errorf("queue depths: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	depth, first, err := q.readStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue depths: %w", err)
	}
	now := q.now()
	out := make(map[string]AsyncDepth, len(depth))
	for fn, n := range depth {
		d := AsyncDepth{Pending: int(n)}
		if at, ok := first[fn]; ok {
			d.Oldest = max(now.Sub(at), 0)
		}
		out[fn] = d
	}
	return out, nil
}

// SubscriptionDepth is what a subscription has not yet delivered, as
// JetStream counts it for the subscription's consumer.
type SubscriptionDepth struct {
	// Pending counts the topic's events stored since the subscription
	// was made that it has not settled: not yet fetched (the consumer's
	// NumPending) or fetched and not yet handed over (NumAckPending: an
	// event waiting for its batch, for Enqueue, for a URL's answer or for
	// its next POST). Events its filter drops count until fetched.
	Pending int64
	// Oldest is how long ago the oldest of them was stored: the topic's
	// first event after the consumer's ack floor (every event up to the
	// floor is settled). 0 when Pending is 0.
	Oldest time.Duration
}

// SubscriptionDepths returns the depth of every subscription whose
// consumer exists, by subscription ID; a subscription whose consumer Run
// has not yet made is absent (nothing is pending for it yet). It makes
// one JetStream request per 256 consumers of TopicStream and one per
// subscription with pending events (its oldest), and blocks for at most
// about two seconds. Errors: stratus.ErrUnavailable or ErrNoSpace while
// the bus is unhealthy or JetStream does not answer, or ctx's error.
func (t *Topics) SubscriptionDepths(ctx context.Context) (map[string]SubscriptionDepth, error) {
	if err := t.bus.Health(); err != nil {
		return nil, fmt.Errorf("subscription depths: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	s, err := t.getStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscription depths: %w", err)
	}
	type floor struct {
		subject string
		seq     uint64
	}
	out := make(map[string]SubscriptionDepth)
	floors := make(map[string]floor)
	done := t.bus.api()
	list := s.ListConsumers(ctx)
	for ci := range list.Info() { // drained whole: the lister's goroutine ends with it
		if !strings.HasPrefix(ci.Name, subscriptionPrefix) {
			continue
		}
		n := int64(ci.NumPending) + int64(ci.NumAckPending)
		out[ci.Name] = SubscriptionDepth{Pending: n}
		if n > 0 {
			floors[ci.Name] = floor{subject: ci.Config.FilterSubject, seq: ci.AckFloor.Stream + 1}
		}
	}
	err = list.Err()
	done()
	if err != nil {
		return nil, fmt.Errorf("subscription depths: %w", t.bus.publishErr(err))
	}
	now := time.Now()
	for id, f := range floors {
		done := t.bus.api()
		m, err := s.GetMsg(ctx, f.seq, jetstream.WithGetMsgSubject(f.subject))
		done()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // settled meanwhile, or aged out of the stream
		case err != nil:
			return nil, fmt.Errorf("subscription depths: oldest event of %s: %w", id, t.bus.publishErr(err))
		}
		d := out[id]
		d.Oldest = max(now.Sub(m.Time), 0)
		out[id] = d
	}
	return out, nil
}
