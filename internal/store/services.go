package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// NextRevision is the number the next revision of service name gets: one
// more than the highest stored (1 for a new service).
func (s *Store) NextRevision(ctx context.Context, name string) (int, error) {
	var n sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MAX(number) FROM revisions WHERE service = ?`, name).Scan(&n); err != nil {
		return 0, fmt.Errorf("next revision of %q: %w", name, err)
	}
	return int(n.Int64) + 1, nil
}

// PutRevision stores rev and makes it the latest revision of its
// service, creating the service if absent; the service's traffic stays as
// set. A revision number already taken, or a name a function holds, is an
// error wrapping stratus.ErrConflict.
func (s *Store) PutRevision(ctx context.Context, rev *stratus.Revision) (*stratus.Service, error) {
	b, err := json.Marshal(rev.Config)
	if err != nil {
		return nil, fmt.Errorf("put service %q: encode config: %w", rev.Service, err)
	}
	now := nanos(s.now())
	svc := &stratus.Service{Name: rev.Service, Revision: rev.Number, Digest: rev.Digest, UpdatedAt: fromNanos(now)}
	if err := json.Unmarshal(b, &svc.Config); err != nil {
		return nil, fmt.Errorf("put service %q: decode config: %w", rev.Service, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := claimName(ctx, tx, rev.Service, KindService); err != nil {
			return err
		}
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM revisions WHERE service = ? AND number = ?`,
			rev.Service, rev.Number).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return fmt.Errorf("revision %d exists: %w", rev.Number, stratus.ErrConflict)
		}
		var (
			created int64
			traffic []byte
		)
		err := tx.QueryRowContext(ctx, `SELECT created_at, traffic FROM services WHERE name = ?`, rev.Service).Scan(&created, &traffic)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = now
			_, err = tx.ExecContext(ctx, `INSERT INTO services (name, serving, created_at, updated_at) VALUES (?, ?, ?, ?)`,
				rev.Service, rev.Number, now, now)
		case err == nil:
			_, err = tx.ExecContext(ctx, `UPDATE services SET serving = ?, updated_at = ? WHERE name = ?`,
				rev.Number, now, rev.Service)
		}
		if err != nil {
			return err
		}
		svc.CreatedAt = fromNanos(created)
		if svc.Traffic, err = decodeTraffic(traffic); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO revisions (service, number, config, image_digest, created_at)
			VALUES (?, ?, ?, ?, ?)`, rev.Service, rev.Number, string(b), rev.Digest, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put service %q: %w", rev.Service, err)
	}
	return svc, nil
}

const selectService = `SELECT s.name, s.serving, r.config, r.image_digest, s.traffic, s.created_at, s.updated_at
	FROM services s JOIN revisions r ON r.service = s.name AND r.number = s.serving`

func scanService(row scanner) (stratus.Service, error) {
	var (
		svc              stratus.Service
		config, traffic  []byte
		created, updated int64
	)
	if err := row.Scan(&svc.Name, &svc.Revision, &config, &svc.Digest, &traffic, &created, &updated); err != nil {
		return stratus.Service{}, err
	}
	if err := json.Unmarshal(config, &svc.Config); err != nil {
		return stratus.Service{}, fmt.Errorf("service %q: decode config: %w", svc.Name, err)
	}
	var err error
	if svc.Traffic, err = decodeTraffic(traffic); err != nil {
		return stratus.Service{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	svc.CreatedAt, svc.UpdatedAt = fromNanos(created), fromNanos(updated)
	return svc, nil
}

// GetService returns service name at its latest revision, with its traffic, or an error
// wrapping stratus.ErrNotFound.
func (s *Store) GetService(ctx context.Context, name string) (*stratus.Service, error) {
	svc, err := scanService(s.r.QueryRowContext(ctx, selectService+` WHERE s.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get service %q: %w", name, err)
	}
	return &svc, nil
}

// ListServices returns every service at its latest revision, with its
// traffic, by name.
func (s *Store) ListServices(ctx context.Context) ([]stratus.Service, error) {
	rows, err := s.r.QueryContext(ctx, selectService+` ORDER BY s.name`)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	defer rows.Close()
	list := []stratus.Service{}
	for rows.Next() {
		svc, err := scanService(rows)
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		list = append(list, svc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return list, nil
}

// DeleteService removes service name with its revisions and log lines
// (not its usage minutes and replica lives) and frees its name (a
// function still stored under it gets it, see freeName), or returns an
// error wrapping stratus.ErrNotFound.
func (s *Store) DeleteService(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM services WHERE name = ?`, name) // revisions cascade
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return stratus.ErrNotFound
		}
		if err := freeName(ctx, tx, name, KindService); err != nil {
			return err
		}
		// The service's usage minutes and replica lives stay: cost history
		// outlives the workload, and only PruneUsage removes it, by age.
		_, err = tx.ExecContext(ctx, `DELETE FROM logs WHERE function = ?`, stratus.ServiceLogKey(name))
		return err
	})
	if errors.Is(err, stratus.ErrNotFound) {
		return fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete service %q: %w", name, err)
	}
	return nil
}

// ImagesInUse returns the image digests that some stored revision uses.
func (s *Store) ImagesInUse(ctx context.Context) (map[string]bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT image_digest FROM revisions`)
	if err != nil {
		return nil, fmt.Errorf("list images in use: %w", err)
	}
	defer rows.Close()
	inUse := map[string]bool{}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("list images in use: %w", err)
		}
		inUse[d] = true
	}
	return inUse, rows.Err()
}
