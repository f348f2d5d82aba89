package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// PutVersion records a new immutable version of function name with cfg and
// code (its sha256 in hex and its size), creating the function if absent.
// Versions of a function are numbered 1, 2, 3…; the new one becomes the
// head. PutVersion returns the function as now stored, its Version being
// the new version's number. A name a service holds is an error wrapping
// stratus.ErrConflict.
func (s *Store) PutVersion(ctx context.Context, name string, cfg stratus.FunctionConfig, codeSHA string, codeSize int64) (*stratus.Function, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("put function %q: encode config: %w", name, err)
	}
	// Return the configuration as it will read back (an empty Env map
	// becomes nil), so that callers see what GetFunction would give.
	var stored stratus.FunctionConfig
	if err := json.Unmarshal(b, &stored); err != nil {
		return nil, fmt.Errorf("put function %q: decode config: %w", name, err)
	}
	now := nanos(s.now())
	f := &stratus.Function{
		Name:      name,
		Config:    stored,
		CodeSHA:   codeSHA,
		CodeSize:  codeSize,
		UpdatedAt: fromNanos(now),
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := claimName(ctx, tx, name, KindFunction); err != nil {
			return err
		}
		var head int
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT head, created_at FROM functions WHERE name = ?`, name).Scan(&head, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = now
			_, err = tx.ExecContext(ctx, `INSERT INTO functions (name, head, created_at, updated_at) VALUES (?, 1, ?, ?)`,
				name, created, now)
		case err == nil:
			_, err = tx.ExecContext(ctx, `UPDATE functions SET head = ?, updated_at = ? WHERE name = ?`,
				head+1, now, name)
		}
		if err != nil {
			return err
		}
		f.Version = head + 1
		f.CreatedAt = fromNanos(created)
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(number), 0) FROM versions WHERE function = ? AND number > 0`,
			name).Scan(&f.Published); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO versions (function, version, config, code_sha, code_size, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, name, f.Version, string(b), codeSHA, codeSize, now)
		return err
	})
	if errors.Is(err, stratus.ErrConflict) {
		return nil, err // says which name and who holds it
	}
	if err != nil {
		return nil, fmt.Errorf("put function %q: %w", name, err)
	}
	return f, nil
}

// selectFunction reads functions joined with their head versions; scan
// with scanFunction.
const selectFunction = `SELECT f.name, f.head,
	COALESCE((SELECT MAX(p.number) FROM versions p WHERE p.function = f.name AND p.number > 0), 0), v.config, v.code_sha, v.code_size, f.created_at, f.updated_at
	FROM functions f JOIN versions v ON v.function = f.name AND v.version = f.head`

type scanner interface{ Scan(dest ...any) error }

func scanFunction(row scanner) (stratus.Function, error) {
	var (
		f                stratus.Function
		config           []byte
		created, updated int64
	)
	if err := row.Scan(&f.Name, &f.Version, &f.Published, &config, &f.CodeSHA, &f.CodeSize, &created, &updated); err != nil {
		return stratus.Function{}, err
	}
	if err := json.Unmarshal(config, &f.Config); err != nil {
		return stratus.Function{}, fmt.Errorf("function %q: decode config: %w", f.Name, err)
	}
	f.CreatedAt, f.UpdatedAt = fromNanos(created), fromNanos(updated)
	return f, nil
}

// GetFunction returns function name at its head version (with the number
// of its newest published version), or an error
// wrapping stratus.ErrNotFound.
func (s *Store) GetFunction(ctx context.Context, name string) (*stratus.Function, error) {
	f, err := scanFunction(s.r.QueryRowContext(ctx, selectFunction+` WHERE f.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get function %q: %w", name, err)
	}
	return &f, nil
}

// ListFunctions returns every function at its head version, ordered by
// name.
func (s *Store) ListFunctions(ctx context.Context) ([]stratus.Function, error) {
	rows, err := s.r.QueryContext(ctx, selectFunction+` ORDER BY f.name`)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	defer rows.Close()
	fs := []stratus.Function{}
	for rows.Next() {
		f, err := scanFunction(rows)
		if err != nil {
			return nil, fmt.Errorf("list functions: %w", err)
		}
		fs = append(fs, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	return fs, nil
}

// GetVersion returns snapshot version of function name, or an error
// wrapping stratus.ErrNotFound if either does not exist.
func (s *Store) GetVersion(ctx context.Context, name string, version int) (*stratus.Version, error) {
	v, err := scanVersion(s.r.QueryRowContext(ctx, `SELECT `+versionColumns+`
		FROM versions WHERE function = ? AND version = ?`, name, version))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q version %d: %w", name, version, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get function %q version %d: %w", name, version, err)
	}
	return &v, nil
}

// DeleteFunction removes function name with its versions, invocation
// records and log lines (not its usage minutes) and frees its name (a
// service still stored under it gets it, see freeName), or returns an
// error wrapping stratus.ErrNotFound.
func (s *Store) DeleteFunction(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM functions WHERE name = ?`, name) // versions cascade
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return stratus.ErrNotFound
		}
		if err := freeName(ctx, tx, name, KindFunction); err != nil {
			return err
		}
		// The function's usage minutes stay: cost history outlives the
		// workload, and only PruneUsage removes it, by age.
		if _, err := tx.ExecContext(ctx, `DELETE FROM invocations WHERE function = ?`, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM logs WHERE function = ?`, name)
		return err
	})
	if errors.Is(err, stratus.ErrNotFound) {
		return fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete function %q: %w", name, err)
	}
	return nil
}

// CodeInUse returns the set of code sha256s that some version references;
// code not in it may be garbage-collected.
func (s *Store) CodeInUse(ctx context.Context) (map[string]bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT code_sha FROM versions`)
	if err != nil {
		return nil, fmt.Errorf("list code in use: %w", err)
	}
	defer rows.Close()
	inUse := map[string]bool{}
	for rows.Next() {
		var sha string
		if err := rows.Scan(&sha); err != nil {
			return nil, fmt.Errorf("list code in use: %w", err)
		}
		inUse[sha] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list code in use: %w", err)
	}
	return inUse, nil
}

// ListVersions returns the snapshots of function name, newest first (the
// published ones with their Number and Qualifier), or an
// error wrapping stratus.ErrNotFound when the function does not exist.
func (s *Store) ListVersions(ctx context.Context, name string) ([]stratus.Version, error) {
	var head int
	err := s.r.QueryRowContext(ctx, `SELECT head FROM functions WHERE name = ?`, name).Scan(&head)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of %q: %w", name, err)
	}
	out, err := s.queryVersions(ctx, `SELECT `+versionColumns+` FROM versions WHERE function = ? ORDER BY version DESC`, name)
	if err != nil {
		return nil, fmt.Errorf("list versions of %q: %w", name, err)
	}
	return out, nil
}

// DeleteVersions removes the given snapshots of function name in one
// transaction and returns how many it removed. The head and published
// versions are never removed, even when listed (DeleteVersion removes a
// published one); versions that do not exist are skipped.
// Invocation records and log lines of removed versions stay (retention
// prunes them).
func (s *Store) DeleteVersions(ctx context.Context, name string, versions []int) (int, error) {
	if len(versions) == 0 {
		return 0, nil
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, v := range versions {
			res, err := tx.ExecContext(ctx, `DELETE FROM versions WHERE function = ? AND version = ? AND number = 0
				AND version <> (SELECT head FROM functions WHERE name = ?)`, name, v, name)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete versions of %q: %w", name, err)
	}
	return int(n), nil
}
