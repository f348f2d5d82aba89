package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// pruneBatch is about how long one of Prune's transactions holds the
// write connection.
const pruneBatch = 20 * time.Millisecond

// Prune bounds the history kept per function: it keeps at most the newest
// maxInvocations invocation records and maxLogLines log lines of each
// function (zero or less for no bound) and deletes those older than maxAge
// (zero or less for no bound). It returns how many rows it deleted.
//
// Functions are pruned one after another in transactions of about
// pruneBatch each, so that commits are few yet writers never wait long.
func (s *Store) Prune(ctx context.Context, maxInvocations, maxLogLines int, maxAge time.Duration) (int64, error) {
	var cutoff int64
	if maxAge > 0 {
		cutoff = s.now().Add(-maxAge).UnixNano()
	}
	var total int64
	for _, t := range []struct {
		table string
		keep  int
		prune func(ctx context.Context, tx *sql.Tx, fn string, keep int, cutoff int64) (int64, error)
	}{
		{"invocations", maxInvocations, pruneInvocations},
		{"logs", maxLogLines, pruneLogs},
		{"async_invocations", maxInvocations, pruneAsync},
	} {
		if t.keep <= 0 && cutoff == 0 {
			continue
		}
		fns, err := s.functionsIn(ctx, t.table)
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", t.table, err)
		}
		for next := 0; next < len(fns); {
			var n int64
			start := next
			err := s.write(ctx, func(tx *sql.Tx) error {
				n, next = 0, start // write may run this again
				began := time.Now()
				for first := next; next < len(fns) && (next == first || time.Since(began) < pruneBatch); next++ {
					d, err := t.prune(ctx, tx, fns[next], t.keep, cutoff)
					if err != nil {
						return fmt.Errorf("function %q: %w", fns[next], err)
					}
					n += d
				}
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("prune %s: %w", t.table, err)
			}
			total += n
		}
	}
	return total, nil
}

// functionsIn returns the distinct function names in table (invocations,
// logs or async_invocations), skipping through its function index instead of reading every
// row.
func (s *Store) functionsIn(ctx context.Context, table string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `WITH RECURSIVE f(name) AS (
			SELECT MIN(function) FROM `+table+`
			UNION ALL
			SELECT (SELECT MIN(function) FROM `+table+` WHERE function > f.name) FROM f WHERE f.name IS NOT NULL
		)
		SELECT name FROM f WHERE name IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var fns []string
	for rows.Next() {
		var fn string
		if err := rows.Scan(&fn); err != nil {
			return nil, err
		}
		fns = append(fns, fn)
	}
	return fns, rows.Err()
}
