package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/stratus-run/stratus"
)

// The kinds of things that hold a name in the names table.
const (
	kindFunction = "function"
	kindService  = "service"
)

// claimName holds name for kind in tx: it records the name if it is free
// and fails with an error wrapping stratus.ErrConflict if another kind
// holds it. Claiming a name kind already holds does nothing.
func claimName(ctx context.Context, tx *sql.Tx, name, kind string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO names (name, kind) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		name, kind); err != nil {
		return fmt.Errorf("claim name %q: %w", name, err)
	}
	var holder string
	if err := tx.QueryRowContext(ctx, `SELECT kind FROM names WHERE name = ?`, name).Scan(&holder); err != nil {
		return fmt.Errorf("claim name %q: %w", name, err)
	}
	if holder != kind {
		return fmt.Errorf("%s %q: a %s has that name: %w", kind, name, holder, stratus.ErrConflict)
	}
	return nil
}

// freeName releases name if kind holds it.
func freeName(ctx context.Context, tx *sql.Tx, name, kind string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM names WHERE name = ? AND kind = ?`, name, kind); err != nil {
		return fmt.Errorf("free name %q: %w", name, err)
	}
	return nil
}

// ClaimServiceName holds name for a service before its first revision is
// stored, so that no function takes it while the service's replicas
// start. A name a function holds is an error wrapping
// stratus.ErrConflict; claiming a name a service holds does nothing.
// ReleaseServiceName gives back a claim whose deploy failed; a claim
// left by a crash is dropped at the next Open.
func (s *Store) ClaimServiceName(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error { return claimName(ctx, tx, name, kindService) })
}

// ReleaseServiceName frees name if a service claimed it but none is
// stored under it (its first deploy failed). It is idempotent.
func (s *Store) ReleaseServiceName(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM names WHERE name = ? AND kind = ?
			AND NOT EXISTS (SELECT 1 FROM services WHERE name = ?)`, name, kindService, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("release name %q: %w", name, err)
	}
	return nil
}

// dropStaleClaims frees the names that services claimed for a first
// deploy that never finished: the server stopped or crashed while their
// replicas started. Only Open calls it, before any deploy can run.
func dropStaleClaims(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM names WHERE kind = ?
		AND name NOT IN (SELECT name FROM services)`, kindService); err != nil {
		return fmt.Errorf("drop unfinished name claims: %w", err)
	}
	return nil
}
