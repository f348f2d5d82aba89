package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// SetTraffic stores service name's traffic split (nil or empty: none, the
// latest revision takes every request) and returns the service. It
// checks that the split is valid (stratus.ValidateTraffic) and that every
// revision it pins is stored (stratus.ErrNotFound otherwise); an unknown
// service is an error wrapping stratus.ErrNotFound. A failed call changes
// nothing.
func (s *Store) SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error) {
	if err := stratus.ValidateTraffic(t); err != nil {
		return nil, fmt.Errorf("set traffic of service %q: %w", name, err)
	}
	if t == nil {
		t = []stratus.TrafficTarget{}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("set traffic of service %q: encode: %w", name, err)
	}
	now := nanos(s.now())
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE services SET traffic = ?, updated_at = ? WHERE name = ?`, string(b), now, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
		}
		for _, x := range t {
			if x.Latest {
				continue
			}
			var found int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM revisions WHERE service = ? AND number = ?`, name, x.Revision).Scan(&found); err != nil {
				return err
			}
			if found == 0 {
				return fmt.Errorf("service %q has no revision %d: %w", name, x.Revision, stratus.ErrNotFound)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set traffic of service %q: %w", name, err)
	}
	return s.GetService(ctx, name)
}

// GetRevision returns revision number of service name, or an error
// wrapping stratus.ErrNotFound.
func (s *Store) GetRevision(ctx context.Context, name string, number int) (*stratus.Revision, error) {
	var (
		config  []byte
		created int64
	)
	rev := &stratus.Revision{Service: name, Number: number}
	err := s.r.QueryRowContext(ctx, `SELECT config, image_digest, created_at FROM revisions WHERE service = ? AND number = ?`,
		name, number).Scan(&config, &rev.Digest, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("service %q has no revision %d: %w", name, number, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get revision %d of service %q: %w", number, name, err)
	}
	if err := json.Unmarshal(config, &rev.Config); err != nil {
		return nil, fmt.Errorf("revision %d of service %q: decode config: %w", number, name, err)
	}
	rev.CreatedAt = fromNanos(created)
	return rev, nil
}

// decodeTraffic reads a stored traffic split; empty is none.
func decodeTraffic(b []byte) ([]stratus.TrafficTarget, error) {
	var t []stratus.TrafficTarget
	if len(b) > 0 {
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("decode traffic: %w", err)
		}
	}
	if len(t) == 0 {
		return nil, nil
	}
	return t, nil
}
