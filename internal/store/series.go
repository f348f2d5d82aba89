package store

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// A SeriesRow is what one workload did in one span of the console's time
// series: a sample of the server's metrics (Step 0, At the sample's
// time) or a period of Step (At its start). Data is internal/series'
// encoding of it, which the store keeps as it is.
type SeriesRow struct {
	Kind string // KindFunction, KindService, or internal/series' own
	Name string
	Step time.Duration // whole seconds; 0 for a sample
	At   time.Time
	Data []byte
}

// PutSeries stores samples and rollups (rows of periods) in one
// transaction: a row of the same kind, name, step and time as a stored
// one replaces it.
func (s *Store) PutSeries(ctx context.Context, samples, rollups []SeriesRow) error {
	if len(samples)+len(rollups) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if len(samples) > 0 {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO series_samples (kind, name, at, data) VALUES (?, ?, ?, ?)
				ON CONFLICT (at, kind, name) DO UPDATE SET data = excluded.data`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for i := range samples {
				r := &samples[i]
				if _, err := stmt.ExecContext(ctx, r.Kind, r.Name, nanos(r.At), r.Data); err != nil {
					return err
				}
			}
		}
		if len(rollups) > 0 {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO series_rollups (step, kind, name, at, data) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (step, at, kind, name) DO UPDATE SET data = excluded.data`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for i := range rollups {
				r := &rollups[i]
				if _, err := stmt.ExecContext(ctx, int64(r.Step/time.Second), r.Kind, r.Name, nanos(r.At), r.Data); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %d series samples and %d rollups: %w", len(samples), len(rollups), err)
	}
	return nil
}

// SeriesQuery selects series rows.
type SeriesQuery struct {
	// Step selects the rollups of that period (SeriesRollups).
	Step time.Duration
	// Kind and Name select one kind or one workload; empty selects all.
	Kind, Name string
	// Since selects rows at or after it; Until, if set, rows at or
	// before it.
	Since, Until time.Time
}

// SeriesSamples returns the samples q selects, in no particular order
// (each query then takes the cheapest index).
func (s *Store) SeriesSamples(ctx context.Context, q SeriesQuery) ([]SeriesRow, error) {
	return s.seriesRows(ctx, "series_samples", q)
}

// SeriesRollups returns the rollups of q.Step that q selects (by their
// start), in no particular order.
func (s *Store) SeriesRollups(ctx context.Context, q SeriesQuery) ([]SeriesRow, error) {
	return s.seriesRows(ctx, "series_rollups", q)
}

func (s *Store) seriesRows(ctx context.Context, table string, q SeriesQuery) ([]SeriesRow, error) {
	var b strings.Builder
	b.WriteString(`SELECT kind, name, at, data FROM ` + table + ` WHERE `)
	var args []any
	if table == "series_rollups" {
		b.WriteString(`step = ? AND `)
		args = append(args, int64(q.Step/time.Second))
	}
	b.WriteString(`at >= ?`)
	args = append(args, nanos(q.Since))
	if !q.Until.IsZero() {
		b.WriteString(` AND at <= ?`)
		args = append(args, nanos(q.Until))
	}
	if q.Kind != "" {
		b.WriteString(` AND kind = ?`)
		args = append(args, q.Kind)
	}
	if q.Name != "" {
		b.WriteString(` AND name = ?`)
		args = append(args, q.Name)
	}
	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", table, err)
	}
	defer rows.Close()
	var out []SeriesRow
	for rows.Next() {
		r := SeriesRow{Step: q.Step}
		if table == "series_samples" {
			r.Step = 0
		}
		var t int64
		if err := rows.Scan(&r.Kind, &r.Name, &t, &r.Data); err != nil {
			return nil, fmt.Errorf("list %s: %w", table, err)
		}
		r.At = fromNanos(t)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", table, err)
	}
	return out, nil
}

// PruneSeries deletes the samples taken before samplesBefore (a zero
// time deletes none) and, for each step in rollupsBefore, the rollups of
// that step that began before its time (rollups of other steps stay), in
// transactions of at most pruneUsageRows rows, so that writers never
// wait long behind it. It returns how many rows it deleted.
func (s *Store) PruneSeries(ctx context.Context, samplesBefore time.Time, rollupsBefore map[time.Duration]time.Time) (int64, error) {
	var total int64
	if !samplesBefore.IsZero() {
		n, err := s.pruneSeries(ctx, `DELETE FROM series_samples WHERE (kind, name, at) IN
			(SELECT kind, name, at FROM series_samples WHERE at < ? LIMIT ?)`, nanos(samplesBefore))
		total += n
		if err != nil {
			return total, fmt.Errorf("prune series samples: %w", err)
		}
	}
	// Step by step, each a range of the primary key.
	for _, step := range slices.Sorted(maps.Keys(rollupsBefore)) {
		before := rollupsBefore[step]
		if before.IsZero() {
			continue
		}
		n, err := s.pruneSeries(ctx, `DELETE FROM series_rollups WHERE (step, kind, name, at) IN
			(SELECT step, kind, name, at FROM series_rollups WHERE step = ? AND at < ? LIMIT ?)`, int64(step/time.Second), nanos(before))
		total += n
		if err != nil {
			return total, fmt.Errorf("prune series rollups of %s: %w", step, err)
		}
	}
	return total, nil
}

// pruneSeries runs query, a DELETE of at most pruneUsageRows rows whose
// last argument is that bound, with args until it deletes fewer, each
// time in a transaction of its own. It returns how many rows it deleted.
func (s *Store) pruneSeries(ctx context.Context, query string, args ...any) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.write(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, query, append(args, pruneUsageRows)...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil || n < pruneUsageRows {
			return total, err
		}
	}
}
