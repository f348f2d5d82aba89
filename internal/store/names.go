package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// The kinds of things that hold a name in the names table (NameHolder)
// and have usage minutes: the root package's kinds.
const (
	KindFunction = stratus.KindFunction
	KindService  = stratus.KindService
)

// NameHolder reports which kind holds name, if any: a read-only look at
// the registry, for a deploy to fail early before its costly steps. It
// decides nothing: the transaction that records a deploy claims the
// name and is the judge.
func (s *Store) NameHolder(ctx context.Context, name string) (kind string, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT kind FROM names WHERE name = ?`, name).Scan(&kind)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up name %q: %w", name, err)
	}
	return kind, true, nil
}

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

// freeName releases name if kind holds it, once the thing of that kind
// is deleted in tx. Should one of the other kind still be stored under
// name, the name passes to it: a data dir from before the registry may
// hold a function and a service of one name (0006_names.sql gave the
// name to the function), and the one left keeps being served.
func freeName(ctx context.Context, tx *sql.Tx, name, kind string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM names WHERE name = ? AND kind = ?`, name, kind); err != nil {
		return fmt.Errorf("free name %q: %w", name, err)
	}
	other, table := KindService, "services"
	if kind == KindService {
		other, table = KindFunction, "functions"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO names (name, kind) SELECT name, CAST(? AS TEXT) FROM `+table+` WHERE name = ?
		ON CONFLICT (name) DO NOTHING`,
		other, name); err != nil {
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
	return s.write(ctx, func(tx *sql.Tx) error { return claimName(ctx, tx, name, KindService) })
}

// ReleaseServiceName frees name if a service claimed it but none is
// stored under it (its first deploy failed). It is idempotent.
func (s *Store) ReleaseServiceName(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM names WHERE name = ? AND kind = ?
			AND NOT EXISTS (SELECT 1 FROM services WHERE name = ?)`, name, KindService, name)
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
		AND name NOT IN (SELECT name FROM services)`, KindService); err != nil {
		return fmt.Errorf("drop unfinished name claims: %w", err)
	}
	return nil
}
