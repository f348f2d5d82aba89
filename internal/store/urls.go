package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stratus-run/stratus"
)

// FunctionURL is a function's URL configuration as the Lambda API keeps
// it. Its auth is not here: it is the function's auth mode.
type FunctionURL struct {
	Function string
	// Cors is Lambda's Cors object as JSON; empty for none.
	Cors string
	// InvokeMode is Lambda's InvokeMode ("BUFFERED").
	InvokeMode string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// PutFunctionURL stores function u.Function's URL configuration: with
// create, a new one (an error wrapping stratus.ErrConflict if it has
// one); else it replaces the existing one (an error wrapping
// stratus.ErrNotFound if it has none), keeping its CreatedAt. A missing
// function is an error wrapping stratus.ErrNotFound. It returns the
// configuration as stored.
func (s *Store) PutFunctionURL(ctx context.Context, u FunctionURL, create bool) (*FunctionURL, error) {
	now := s.now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := checkFunctionRow(ctx, tx, u.Function); err != nil {
			return err
		}
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM function_urls WHERE function = ?`, u.Function).Scan(&created)
		switch {
		case err == nil && create:
			return fmt.Errorf("function %q has a URL configuration already: %w", u.Function, stratus.ErrConflict)
		case errors.Is(err, sql.ErrNoRows) && !create:
			return fmt.Errorf("function %q has no URL configuration: %w", u.Function, stratus.ErrNotFound)
		case errors.Is(err, sql.ErrNoRows):
			created = nanos(now)
		case err != nil:
			return err
		}
		u.CreatedAt, u.UpdatedAt = fromNanos(created), fromNanos(nanos(now))
		_, err = tx.ExecContext(ctx, `INSERT INTO function_urls (function, cors, invoke_mode, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (function) DO UPDATE SET cors = excluded.cors, invoke_mode = excluded.invoke_mode, updated_at = excluded.updated_at`,
			u.Function, u.Cors, u.InvokeMode, created, nanos(now))
		return err
	})
	if errors.Is(err, stratus.ErrConflict) || errors.Is(err, stratus.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("put URL configuration of function %q: %w", u.Function, err)
	}
	return &u, nil
}

// GetFunctionURL returns function fn's URL configuration, or an error
// wrapping stratus.ErrNotFound if it has none.
func (s *Store) GetFunctionURL(ctx context.Context, fn string) (*FunctionURL, error) {
	u := FunctionURL{Function: fn}
	var created, updated int64
	err := s.r.QueryRowContext(ctx, `SELECT cors, invoke_mode, created_at, updated_at FROM function_urls WHERE function = ?`, fn).
		Scan(&u.Cors, &u.InvokeMode, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q has no URL configuration: %w", fn, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get URL configuration of function %q: %w", fn, err)
	}
	u.CreatedAt, u.UpdatedAt = fromNanos(created), fromNanos(updated)
	return &u, nil
}

// DeleteFunctionURL removes function fn's URL configuration, or returns
// an error wrapping stratus.ErrNotFound if it has none.
func (s *Store) DeleteFunctionURL(ctx context.Context, fn string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM function_urls WHERE function = ?`, fn)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("function %q has no URL configuration: %w", fn, stratus.ErrNotFound)
		}
		return nil
	})
	if err != nil && !errors.Is(err, stratus.ErrNotFound) {
		return fmt.Errorf("delete URL configuration of function %q: %w", fn, err)
	}
	return err
}

// checkFunctionRow returns an error wrapping stratus.ErrNotFound unless
// function name is stored.
func checkFunctionRow(ctx context.Context, tx *sql.Tx, name string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM functions WHERE name = ?`, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	return err
}
