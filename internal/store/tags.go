package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/stratus-run/stratus"
)

// TagFunction adds tags to function fn, replacing the values of keys it
// has, in one transaction: if fn would then have more than maxTags tags
// (maxTags > 0), nothing changes and the error wraps stratus.ErrInvalid.
// A missing function is an error wrapping stratus.ErrNotFound. The
// caller checks the keys and values.
func (s *Store) TagFunction(ctx context.Context, fn string, tags map[string]string, maxTags int) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := checkFunctionRow(ctx, tx, fn); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO function_tags (function, key, value) VALUES (?, ?, ?)
				ON CONFLICT (function, key) DO UPDATE SET value = excluded.value`, fn, k, tags[k]); err != nil {
				return err
			}
		}
		if maxTags <= 0 {
			return nil
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM function_tags WHERE function = ?`, fn).Scan(&n); err != nil {
			return err
		}
		if n > maxTags {
			return fmt.Errorf("function %q would have %d tags, more than %d: %w", fn, n, maxTags, stratus.ErrInvalid)
		}
		return nil
	})
	if err != nil && !errors.Is(err, stratus.ErrNotFound) && !errors.Is(err, stratus.ErrInvalid) {
		return fmt.Errorf("tag function %q: %w", fn, err)
	}
	return err
}

// UntagFunction removes the tags of function fn with the given keys;
// keys it does not have are no error. A missing function is an error
// wrapping stratus.ErrNotFound.
func (s *Store) UntagFunction(ctx context.Context, fn string, keys []string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := checkFunctionRow(ctx, tx, fn); err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `DELETE FROM function_tags WHERE function = ? AND key = ?`, fn, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, stratus.ErrNotFound) {
		return fmt.Errorf("untag function %q: %w", fn, err)
	}
	return err
}

// FunctionTags returns the tags of function fn (empty, not nil, when it
// has none), or an error wrapping stratus.ErrNotFound if it is not
// stored.
func (s *Store) FunctionTags(ctx context.Context, fn string) (map[string]string, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("tags of function %q: %w", fn, err)
	}
	defer tx.Rollback()
	if err := checkFunctionRow(ctx, tx, fn); err != nil {
		if errors.Is(err, stratus.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("tags of function %q: %w", fn, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT key, value FROM function_tags WHERE function = ?`, fn)
	if err != nil {
		return nil, fmt.Errorf("tags of function %q: %w", fn, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("tags of function %q: %w", fn, err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tags of function %q: %w", fn, err)
	}
	return out, nil
}
