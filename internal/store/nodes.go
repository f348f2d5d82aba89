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
}

// Heartbeat records n as node n.Name's latest word of itself, replacing
// the one before. A zero n.HeartbeatAt is stored as the store's clock
// now. An empty name is refused (stratus.ErrInvalid).
func (s *Store) Heartbeat(ctx context.Context, n Node) error {
	if n.Name == "" {
		return fmt.Errorf("heartbeat: node name is empty: %w", stratus.ErrInvalid)
	}
	if n.HeartbeatAt.IsZero() {
		n.HeartbeatAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO nodes
			(name, address, region, version, started_at, heartbeat_at, instances, replicas, state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET
				address = excluded.address, region = excluded.region, version = excluded.version,
				started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
				instances = excluded.instances, replicas = excluded.replicas, state = excluded.state`,
			n.Name, n.Address, n.Region, n.Version, nanos(n.StartedAt), nanos(n.HeartbeatAt),
			n.Instances, n.Replicas, n.State)
		return err
	})
	if err != nil {
		return fmt.Errorf("heartbeat of node %q: %w", n.Name, err)
	}
	return nil
}

// Nodes returns every node that heartbeated and has not been deleted,
// alive or not, by name.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, address, region, version, started_at, heartbeat_at,
		instances, replicas, state FROM nodes ORDER BY name`)
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
			&n.Instances, &n.Replicas, &n.State); err != nil {
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

// DeleteNode removes node name's row (a server that stops cleanly says
// so); one that is gone is no error.
func (s *Store) DeleteNode(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete node %q: %w", name, err)
	}
	return nil
}
