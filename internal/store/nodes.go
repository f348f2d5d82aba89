package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/stratus-run/stratus"
)

// Node is one Stratus server of a cluster as it last said of itself in
// its heartbeat (see internal/cluster).
type Node struct {
	Name    string
	Address string // the base URL the other servers reach it at: "http://127.0.0.1:8081"
	Region  string
	Version string

	StartedAt   time.Time
	HeartbeatAt time.Time

	Instances int
	Replicas  int
	// State is "ready", "unready: REASON" or "stopping".
	State string
	// Incarnation is a random ID of the run of the server that writes
	// the row: two servers under one name have different ones.
	Incarnation string
}

// Heartbeat records n as node n.Name's latest word of itself, replacing
// the one before, if that one was written by the same incarnation (or
// there is none): a row of another incarnation is refused
// (stratus.ErrConflict), so that two servers under one name cannot both
// heartbeat as it. A zero n.HeartbeatAt is stored as the store's clock
// now. An empty name is refused (stratus.ErrInvalid).
func (s *Store) Heartbeat(ctx context.Context, n Node) error {
	return s.putNode(ctx, n, nil)
}

// ClaimNode writes n as Heartbeat does, and also over the row old (of
// another incarnation, a server that died) if the row is still exactly
// old's (same incarnation, same heartbeat): a server that restarts under
// its name takes the row of its previous run once that run stopped
// heartbeating. Anything else in the row is stratus.ErrConflict.
func (s *Store) ClaimNode(ctx context.Context, n Node, old Node) error {
	return s.putNode(ctx, n, &old)
}

func (s *Store) putNode(ctx context.Context, n Node, old *Node) error {
	if n.Name == "" {
		return fmt.Errorf("heartbeat: node name is empty: %w", stratus.ErrInvalid)
	}
	if n.HeartbeatAt.IsZero() {
		n.HeartbeatAt = s.now()
	}
	// Without old, the condition is the same incarnation's twice.
	oldInc, oldBeat := n.Incarnation, int64(0)
	if old != nil {
		oldInc, oldBeat = old.Incarnation, nanos(old.HeartbeatAt)
	}
	var wrote int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO nodes
			(name, address, region, version, started_at, heartbeat_at, instances, replicas, state, incarnation)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET
				address = excluded.address, region = excluded.region, version = excluded.version,
				started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
				instances = excluded.instances, replicas = excluded.replicas, state = excluded.state,
				incarnation = excluded.incarnation
			WHERE nodes.incarnation = excluded.incarnation
				OR (nodes.incarnation = ? AND (CAST(? AS BIGINT) = 0 OR nodes.heartbeat_at = ?))`,
			n.Name, n.Address, n.Region, n.Version, nanos(n.StartedAt), nanos(n.HeartbeatAt),
			n.Instances, n.Replicas, n.State, n.Incarnation, oldInc, oldBeat, oldBeat)
		if err != nil {
			return err
		}
		wrote, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("heartbeat of node %q: %w", n.Name, err)
	}
	if wrote == 0 {
		return fmt.Errorf("heartbeat of node %q: the row is another server's (incarnation): %w", n.Name, stratus.ErrConflict)
	}
	return nil
}

// Nodes returns every node that heartbeated and has not been deleted,
// alive or not, by name.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, address, region, version, started_at, heartbeat_at,
		instances, replicas, state, incarnation FROM nodes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	out := []Node{}
	for rows.Next() {
		var (
			n                  Node
			started, heartbeat int64
		)
		if err := rows.Scan(&n.Name, &n.Address, &n.Region, &n.Version, &started, &heartbeat,
			&n.Instances, &n.Replicas, &n.State, &n.Incarnation); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		n.StartedAt, n.HeartbeatAt = fromNanos(started), fromNanos(heartbeat)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// DeleteNode removes node name's row if incarnation wrote it (a server
// that stops cleanly says so); one that is gone, or another
// incarnation's, is left as it is, without error.
func (s *Store) DeleteNode(ctx context.Context, name, incarnation string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE name = ? AND incarnation = ?`, name, incarnation)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete node %q: %w", name, err)
	}
	return nil
}
