package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// join takes the node's name in the store before Run does anything
// else: it writes the node's row with this Cluster's incarnation. A row
// of another incarnation is either a live server under the same name or
// this server's previous run, killed without deleting its row: join
// watches it, refuses (an error wrapping stratus.ErrConflict) if it
// heartbeats again, and takes it once its last heartbeat is DeadAfter
// old (so a restart after a crash waits at most DeadAfter). Single (one
// server on its own SQLite file) takes the row at once. Store errors are
// logged and retried until ctx ends (then join returns nil and Run
// ends).
func (c *Cluster) join(ctx context.Context) error {
	var seen *store.Node // the other incarnation's row when first seen
	failing := false
	for ctx.Err() == nil {
		cur, err := c.ownRow(ctx)
		if err == nil {
			me := c.self(c.state())
			switch {
			case cur == nil || cur.Incarnation == c.incarnation:
				err = c.db.Heartbeat(ctx, me)
			case c.single:
				err = c.db.ClaimNode(ctx, me, *cur)
			default:
				age := time.Since(cur.HeartbeatAt)
				if age < c.cfg.DeadAfter {
					if seen != nil && cur.State != "stopping" &&
						(cur.Incarnation != seen.Incarnation || !cur.HeartbeatAt.Equal(seen.HeartbeatAt)) {
						return fmt.Errorf("node name %s is in use by a live server (last heartbeat %.0fs ago at %s): give each server its own --node-name: %w",
							c.cfg.Node, age.Seconds(), cur.Address, stratus.ErrConflict)
					}
					if seen == nil {
						c.log.Warn("the node's name has another server's row: waiting until it heartbeats again (another live server under this name: refused) or passes for dead (this server's previous run: taken)",
							"node", c.cfg.Node, "address", cur.Address, "heartbeat_age", age.Round(time.Millisecond), "wait_at_most", c.cfg.DeadAfter-age)
					}
					seen = cur
					if err := sleepFor(ctx, min(c.cfg.Heartbeat/2, c.cfg.DeadAfter-age)); err != nil {
						return nil
					}
					continue
				}
				err = c.db.ClaimNode(ctx, me, *cur)
				if err == nil {
					c.log.Info("took the node's row of a run that stopped heartbeating", "node", c.cfg.Node, "heartbeat_age", age.Round(time.Millisecond))
				}
			}
		}
		switch {
		case err == nil:
			c.beats.record(nil) // a heartbeat reached the store
			c.joined.Store(true)
			return nil
		case errors.Is(err, stratus.ErrConflict):
			continue // the row changed since it was read: read it again
		case ctx.Err() == nil && !failing:
			c.log.Warn("join the cluster: the store fails; retrying", "err", err)
			failing = true
		}
		if err := sleepFor(ctx, c.cfg.Heartbeat); err != nil {
			return nil
		}
	}
	return nil
}

// ownRow returns the node row under this node's name, nil if none.
func (c *Cluster) ownRow(ctx context.Context) (*store.Node, error) {
	ns, err := c.db.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ns {
		if ns[i].Name == c.cfg.Node {
			return &ns[i], nil
		}
	}
	return nil, nil
}

// evict makes this node stop owning, for good: its heartbeat found
// another incarnation in its row (another server took its name after it
// passed for dead). Its leases are dropped here, the subscribers told.
func (c *Cluster) evict() {
	if c.evicted.Swap(true) {
		return
	}
	c.log.Error("the node's row is another server's now (it took this one for dead, or has its name): this server owns nothing any more; restart it, with its own --node-name if another server has this one",
		"node", c.cfg.Node)
	c.mu.Lock()
	lost := make([]string, 0, len(c.held))
	for name := range c.held {
		lost = append(lost, name)
	}
	clear(c.held)
	c.mu.Unlock()
	c.wake()
	for _, name := range lost {
		c.changed(name)
	}
}

// sleepFor waits d or until ctx ends (its error then).
func sleepFor(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// beatState is the outcome of the heartbeats so far.
type beatState struct {
	mu      sync.Mutex
	ok      bool      // the last heartbeat reached the store
	since   time.Time // when the heartbeats began to fail (zero: none yet)
	lastErr error
}

// record notes the outcome of a heartbeat.
func (b *beatState) record(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.ok, b.since, b.lastErr = true, time.Time{}, nil
	case b.ok || b.since.IsZero():
		b.ok, b.since, b.lastErr = false, time.Now(), err
	default:
		b.lastErr = err
	}
}

// Health is the node's readiness in its cluster: nil while its
// heartbeats reach the store, else an error wrapping
// stratus.ErrUnavailable that says since when they fail and why (the
// store is unreachable: the other servers will soon take this one for
// dead, and its leases lapse). Before the first heartbeat, it says so.
func (c *Cluster) Health() error {
	b := &c.beats
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.ok:
		return nil
	case b.since.IsZero():
		return fmt.Errorf("no heartbeat has reached the store yet: %w", stratus.ErrUnavailable)
	}
	return fmt.Errorf("heartbeats fail since %s: %w: %w", b.since.UTC().Format(time.RFC3339), b.lastErr, stratus.ErrUnavailable)
}
