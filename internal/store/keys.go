package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stratus-run/stratus"
)

// AccessKey is an access key of the Lambda API as stored: its secret is
// sealed by the caller (see sigv4.Keys); the store never sees it in
// plain text.
type AccessKey struct {
	ID          string
	Sealed      []byte // the sealed secret access key
	Description string
	CreatedAt   time.Time
	LastUsedAt  time.Time // zero before its first use
}

// CreateAccessKey stores a new access key, or returns an error wrapping
// stratus.ErrConflict if one of that ID exists. A zero CreatedAt is set to
// now.
func (s *Store) CreateAccessKey(ctx context.Context, k AccessKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM access_keys WHERE id = ?`, k.ID).Scan(&n)
		switch {
		case err == nil:
			return fmt.Errorf("access key %s already exists: %w", k.ID, stratus.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO access_keys (id, secret, description, created_at, last_used_at) VALUES (?, ?, ?, ?, ?)`,
			k.ID, k.Sealed, k.Description, nanos(k.CreatedAt), nanos(k.LastUsedAt))
		return err
	})
	if err != nil {
		if errors.Is(err, stratus.ErrConflict) {
			return err
		}
		return fmt.Errorf("create access key %s: %w", k.ID, err)
	}
	return nil
}

// GetAccessKey returns access key id, or an error wrapping
// stratus.ErrNotFound.
func (s *Store) GetAccessKey(ctx context.Context, id string) (*AccessKey, error) {
	k := AccessKey{ID: id}
	var created, used int64
	err := s.r.QueryRowContext(ctx, `SELECT secret, description, created_at, last_used_at FROM access_keys WHERE id = ?`, id).
		Scan(&k.Sealed, &k.Description, &created, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("access key %s: %w", id, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get access key %s: %w", id, err)
	}
	k.CreatedAt, k.LastUsedAt = fromNanos(created), fromNanos(used)
	return &k, nil
}

// ListAccessKeys returns every access key, oldest first, without their
// sealed secrets.
func (s *Store) ListAccessKeys(ctx context.Context) ([]AccessKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, description, created_at, last_used_at FROM access_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	defer rows.Close()
	var out []AccessKey
	for rows.Next() {
		var k AccessKey
		var created, used int64
		if err := rows.Scan(&k.ID, &k.Description, &created, &used); err != nil {
			return nil, fmt.Errorf("list access keys: %w", err)
		}
		k.CreatedAt, k.LastUsedAt = fromNanos(created), fromNanos(used)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	return out, nil
}

// DeleteAccessKey deletes access key id, or returns an error wrapping
// stratus.ErrNotFound.
func (s *Store) DeleteAccessKey(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM access_keys WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("access key %s: %w", id, stratus.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, stratus.ErrNotFound) {
			return err
		}
		return fmt.Errorf("delete access key %s: %w", id, err)
	}
	return nil
}

// TouchAccessKey records that access key id was used at t (a later time
// than the one recorded; an earlier one changes nothing). A key that is
// gone is no error.
func (s *Store) TouchAccessKey(ctx context.Context, id string, t time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE access_keys SET last_used_at = ? WHERE id = ? AND last_used_at < ?`, nanos(t), id, nanos(t))
		return err
	})
	if err != nil {
		return fmt.Errorf("touch access key %s: %w", id, err)
	}
	return nil
}
