package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/stratus-run/stratus"
)

// Published versions and aliases. Publishing gives the head snapshot a
// number, Lambda's version number: the function's counter of numbers
// given (functions.published) plus one, so a number is never given twice,
// even after its version was deleted. A published snapshot is never
// pruned (DeleteVersions skips it); DeleteVersion or DeleteFunction
// removes it.

// versionColumns are read by scanVersion, in this order.
const versionColumns = `function, version, number, description, config, code_sha, code_size, created_at`

func scanVersion(row scanner) (stratus.Version, error) {
	var (
		v       stratus.Version
		config  []byte
		created int64
	)
	if err := row.Scan(&v.Function, &v.Version, &v.Number, &v.Description, &config, &v.CodeSHA, &v.CodeSize, &created); err != nil {
		return stratus.Version{}, err
	}
	if err := json.Unmarshal(config, &v.Config); err != nil {
		return stratus.Version{}, fmt.Errorf("function %q version %d: decode config: %w", v.Function, v.Version, err)
	}
	v.CreatedAt = fromNanos(created)
	if v.Number > 0 {
		v.Qualifier = strconv.Itoa(v.Number)
	}
	return v, nil
}

// PublishVersion publishes the head snapshot of function name with
// description and returns it with its number (and its Qualifier, the
// number). When the head has the code and version configuration of the
// newest published version (nothing changed since but function-level
// settings, see functionLevel), it returns that version and publishes
// nothing, as Lambda does. An unknown function is an error
// wrapping stratus.ErrNotFound.
func (s *Store) PublishVersion(ctx context.Context, name, description string) (*stratus.Version, error) {
	var out stratus.Version
	err := s.write(ctx, func(tx *sql.Tx) error {
		var head, last int
		err := tx.QueryRowContext(ctx, `SELECT head, published FROM functions WHERE name = ?`, name).Scan(&head, &last)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var (
			number       int
			config, code string
		)
		if err := tx.QueryRowContext(ctx, `SELECT number, config, code_sha FROM versions WHERE function = ? AND version = ?`,
			name, head).Scan(&number, &config, &code); err != nil {
			return err
		}
		if number == 0 {
			// The newest published version, if the head is the same.
			var (
				n                    int
				lastConfig, lastCode string
			)
			err := tx.QueryRowContext(ctx, `SELECT number, config, code_sha FROM versions WHERE function = ? AND number > 0
				ORDER BY number DESC LIMIT 1`, name).Scan(&n, &lastConfig, &lastCode)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			same := false
			if err == nil && lastCode == code {
				if same, err = sameVersionConfig(config, lastConfig); err != nil {
					return err
				}
			}
			if same {
				number = n
			} else {
				number = last + 1
				if _, err := tx.ExecContext(ctx, `UPDATE versions SET number = ?, description = ? WHERE function = ? AND version = ?`,
					number, description, name, head); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE functions SET published = ? WHERE name = ?`, number, name); err != nil {
					return err
				}
			}
		}
		out, err = scanVersion(tx.QueryRowContext(ctx, `SELECT `+versionColumns+` FROM versions WHERE function = ? AND number = ?`, name, number))
		return err
	})
	if errors.Is(err, stratus.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("publish a version of %q: %w", name, err)
	}
	return &out, nil
}

// ListPublished returns the published versions of function name by
// ascending number, or an error wrapping stratus.ErrNotFound when the
// function does not exist.
func (s *Store) ListPublished(ctx context.Context, name string) ([]stratus.Version, error) {
	if err := s.r.QueryRowContext(ctx, `SELECT 1 FROM functions WHERE name = ?`, name).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("list published versions of %q: %w", name, err)
	}
	vs, err := s.queryVersions(ctx, `SELECT `+versionColumns+` FROM versions WHERE function = ? AND number > 0 ORDER BY number`, name)
	if err != nil {
		return nil, fmt.Errorf("list published versions of %q: %w", name, err)
	}
	return vs, nil
}

// AllPublished returns the published versions of every function, by
// function and ascending number.
func (s *Store) AllPublished(ctx context.Context) ([]stratus.Version, error) {
	vs, err := s.queryVersions(ctx, `SELECT `+versionColumns+` FROM versions WHERE number > 0 ORDER BY function, number`)
	if err != nil {
		return nil, fmt.Errorf("list published versions: %w", err)
	}
	return vs, nil
}

func (s *Store) queryVersions(ctx context.Context, query string, args ...any) ([]stratus.Version, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vs := []stratus.Version{}
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// GetPublished returns published version n of function name, or an error
// wrapping stratus.ErrNotFound.
func (s *Store) GetPublished(ctx context.Context, name string, n int) (*stratus.Version, error) {
	v, err := scanVersion(s.r.QueryRowContext(ctx, `SELECT `+versionColumns+` FROM versions WHERE function = ? AND number = ? AND number > 0`, name, n))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q version %d: %w", name, n, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get function %q version %d: %w", name, n, err)
	}
	return &v, nil
}

// DeleteVersion removes published version n of function name and returns
// its snapshot: the snapshot loses its number and stays, unpublished, for
// pruning to remove once no instance may run it (DeleteVersions). A
// version an alias points at or weighs is an error wrapping
// stratus.ErrConflict naming the alias; an unknown function or version
// one wrapping stratus.ErrNotFound. Its number is not given again.
func (s *Store) DeleteVersion(ctx context.Context, name string, n int) (snapshot int, _ error) {
	var snap int
	err := s.write(ctx, func(tx *sql.Tx) error {
		var head int
		err := tx.QueryRowContext(ctx, `SELECT f.head, v.version FROM functions f JOIN versions v ON v.function = f.name
			WHERE f.name = ? AND v.number = ? AND v.number > 0`, name, n).Scan(&head, &snap)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("function %q version %d: %w", name, n, stratus.ErrNotFound)
		}
		if err != nil {
			return err
		}
		as, err := listAliases(ctx, tx, name)
		if err != nil {
			return err
		}
		q := strconv.Itoa(n)
		for _, a := range as {
			if _, weighed := a.Weights[q]; a.Version == q || weighed {
				return fmt.Errorf("function %q version %d: alias %q points at it (move or delete the alias first): %w", name, n, a.Name, stratus.ErrConflict)
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE versions SET number = 0, description = '' WHERE function = ? AND version = ?`, name, snap)
		return err
	})
	if errors.Is(err, stratus.ErrNotFound) || errors.Is(err, stratus.ErrConflict) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("delete function %q version %d: %w", name, n, err)
	}
	return snap, nil
}

// PutAlias creates alias a (create) or updates it, with a.RevisionID as
// its new revision ID. Creating an alias that exists is an error wrapping
// stratus.ErrConflict; updating a missing one (or any alias of a missing
// function) one wrapping stratus.ErrNotFound; so is a version a names
// that is not published. With ifRevision set, an update of an alias whose
// revision ID differs is an error wrapping stratus.ErrConflict. The
// caller validates a (Alias.Validate).
func (s *Store) PutAlias(ctx context.Context, a stratus.Alias, create bool, ifRevision string) error {
	weights := ""
	if len(a.Weights) > 0 {
		b, err := json.Marshal(a.Weights)
		if err != nil {
			return fmt.Errorf("put alias %q of %q: encode weights: %w", a.Name, a.Function, err)
		}
		weights = string(b)
	}
	now := nanos(s.now())
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM functions WHERE name = ?`, a.Function).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("function %q: %w", a.Function, stratus.ErrNotFound)
		} else if err != nil {
			return err
		}
		for _, q := range aliasVersions(a) {
			if q == stratus.LatestVersion {
				continue
			}
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM versions WHERE function = ? AND number = ? AND number > 0`, a.Function, q).Scan(new(int))
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("alias %q: function %q has no published version %s: %w", a.Name, a.Function, q, stratus.ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		var rev string
		err := tx.QueryRowContext(ctx, `SELECT revision_id FROM aliases WHERE function = ? AND name = ?`, a.Function, a.Name).Scan(&rev)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		switch {
		case create && exists:
			return fmt.Errorf("alias %q of function %q exists already: %w", a.Name, a.Function, stratus.ErrConflict)
		case !create && !exists:
			return fmt.Errorf("alias %q of function %q: %w", a.Name, a.Function, stratus.ErrNotFound)
		case !create && ifRevision != "" && ifRevision != rev:
			return fmt.Errorf("alias %q of function %q: precondition failed: revision ID %q is not the alias's (%q): %w", a.Name, a.Function, ifRevision, rev, stratus.ErrConflict)
		case create:
			_, err = tx.ExecContext(ctx, `INSERT INTO aliases (function, name, description, version, weights, revision_id, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, a.Function, a.Name, a.Description, a.Version, weights, a.RevisionID, now, now)
		default:
			_, err = tx.ExecContext(ctx, `UPDATE aliases SET description = ?, version = ?, weights = ?, revision_id = ?, updated_at = ?
				WHERE function = ? AND name = ?`, a.Description, a.Version, weights, a.RevisionID, now, a.Function, a.Name)
		}
		return err
	})
	if errors.Is(err, stratus.ErrNotFound) || errors.Is(err, stratus.ErrConflict) {
		return err
	}
	if err != nil {
		return fmt.Errorf("put alias %q of %q: %w", a.Name, a.Function, err)
	}
	return nil
}

// aliasVersions are the versions a names: its own, then the weighed one.
func aliasVersions(a stratus.Alias) []string {
	out := []string{a.Version}
	for q := range a.Weights {
		out = append(out, q)
	}
	return out
}

const aliasColumns = `function, name, description, version, weights, revision_id`

func scanAlias(row scanner) (stratus.Alias, error) {
	var (
		a       stratus.Alias
		weights string
	)
	if err := row.Scan(&a.Function, &a.Name, &a.Description, &a.Version, &weights, &a.RevisionID); err != nil {
		return stratus.Alias{}, err
	}
	if weights != "" {
		if err := json.Unmarshal([]byte(weights), &a.Weights); err != nil {
			return stratus.Alias{}, fmt.Errorf("alias %q of %q: decode weights: %w", a.Name, a.Function, err)
		}
	}
	return a, nil
}

func queryAliases(ctx context.Context, q querier, query string, args ...any) ([]stratus.Alias, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	as := []stratus.Alias{}
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	return as, rows.Err()
}

func listAliases(ctx context.Context, q querier, fn string) ([]stratus.Alias, error) {
	return queryAliases(ctx, q, `SELECT `+aliasColumns+` FROM aliases WHERE function = ? ORDER BY name`, fn)
}

// GetAlias returns alias name of function fn, or an error wrapping
// stratus.ErrNotFound.
func (s *Store) GetAlias(ctx context.Context, fn, name string) (*stratus.Alias, error) {
	a, err := scanAlias(s.r.QueryRowContext(ctx, `SELECT `+aliasColumns+` FROM aliases WHERE function = ? AND name = ?`, fn, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("alias %q of function %q: %w", name, fn, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get alias %q of %q: %w", name, fn, err)
	}
	return &a, nil
}

// ListAliases returns the aliases of function fn by name, or an error
// wrapping stratus.ErrNotFound when the function does not exist.
func (s *Store) ListAliases(ctx context.Context, fn string) ([]stratus.Alias, error) {
	if err := s.r.QueryRowContext(ctx, `SELECT 1 FROM functions WHERE name = ?`, fn).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %q: %w", fn, stratus.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("list aliases of %q: %w", fn, err)
	}
	as, err := listAliases(ctx, s.r, fn)
	if err != nil {
		return nil, fmt.Errorf("list aliases of %q: %w", fn, err)
	}
	return as, nil
}

// AllAliases returns the aliases of every function, by function and name.
func (s *Store) AllAliases(ctx context.Context) ([]stratus.Alias, error) {
	as, err := queryAliases(ctx, s.r, `SELECT `+aliasColumns+` FROM aliases ORDER BY function, name`)
	if err != nil {
		return nil, fmt.Errorf("list aliases: %w", err)
	}
	return as, nil
}

// DeleteAlias removes alias name of function fn, or returns an error
// wrapping stratus.ErrNotFound.
func (s *Store) DeleteAlias(ctx context.Context, fn, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM aliases WHERE function = ? AND name = ?`, fn, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("alias %q of function %q: %w", name, fn, stratus.ErrNotFound)
		}
		return nil
	})
	if errors.Is(err, stratus.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("delete alias %q of %q: %w", name, fn, err)
	}
	return nil
}

// functionLevel clears the settings of c that belong to the function, not
// to a version, as on Lambda: its concurrency (MaxConcurrency, Throttled:
// reserved concurrency), its URL's auth (Auth) and its event-invoke
// configuration (MaxRetries, MaxEventAge, OnSuccess, OnFailure). The
// head's hold for every version; changing them publishes nothing new.
func functionLevel(c *stratus.FunctionConfig) {
	c.MaxConcurrency, c.Throttled, c.Auth = 0, false, ""
	c.MaxRetries, c.MaxEventAge, c.OnSuccess, c.OnFailure = nil, 0, "", ""
}

// sameVersionConfig reports whether the stored configurations a and b
// differ only in function-level settings (functionLevel).
func sameVersionConfig(a, b string) (bool, error) {
	var ca, cb stratus.FunctionConfig
	if err := json.Unmarshal([]byte(a), &ca); err != nil {
		return false, fmt.Errorf("decode config: %w", err)
	}
	if err := json.Unmarshal([]byte(b), &cb); err != nil {
		return false, fmt.Errorf("decode config: %w", err)
	}
	functionLevel(&ca)
	functionLevel(&cb)
	return reflect.DeepEqual(ca, cb), nil
}
