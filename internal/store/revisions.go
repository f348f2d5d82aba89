package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stratus-run/stratus"
)

// ListRevisions returns every stored revision of service name, newest
// (highest number) first, or an error wrapping stratus.ErrNotFound for an
// unknown service.
func (s *Store) ListRevisions(ctx context.Context, name string) ([]stratus.Revision, error) {
	var found int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM services WHERE name = ?`, name).Scan(&found); err != nil {
		return nil, fmt.Errorf("list revisions of service %q: %w", name, err)
	}
	if found == 0 {
		return nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT number, config, image_digest, created_at FROM revisions
		WHERE service = ? ORDER BY number DESC`, name)
	if err != nil {
		return nil, fmt.Errorf("list revisions of service %q: %w", name, err)
	}
	defer rows.Close()
	list := []stratus.Revision{}
	for rows.Next() {
		var (
			config  []byte
			created int64
		)
		rev := stratus.Revision{Service: name}
		if err := rows.Scan(&rev.Number, &config, &rev.Digest, &created); err != nil {
			return nil, fmt.Errorf("list revisions of service %q: %w", name, err)
		}
		if err := json.Unmarshal(config, &rev.Config); err != nil {
			return nil, fmt.Errorf("revision %d of service %q: decode config: %w", rev.Number, name, err)
		}
		rev.CreatedAt = fromNanos(created)
		list = append(list, rev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list revisions of service %q: %w", name, err)
	}
	return list, nil
}
