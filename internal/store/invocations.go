package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// Limits of ListInvocations.
const (
	DefaultInvocationLimit = 100
	MaxInvocationLimit     = 10000
)

// InsertInvocations records recs in one transaction, and in the same
// transaction adds them to their functions' usage minutes (MinuteOf), so
// that a batch counts in both or in neither.
func (s *Store) InsertInvocations(ctx context.Context, recs []stratus.Invocation) error {
	if len(recs) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := s.insertRows(ctx, tx, `INSERT INTO invocations (function, request_id, version, start,
			duration_ms, billed_ms, memory_mb, max_memory_mb, init_duration_ms, cold, outcome, error_type, instance,
			"trigger", cpu_ms, arch, trace_id, qualifier)`,
			18, len(recs), func(a []any, i int) []any {
				r := &recs[i]
				return append(a, r.Function, r.RequestID, r.Version, nanos(r.Start),
					r.DurationMs, r.BilledMs, r.MemoryMB, r.MaxMemoryMB, r.InitDurationMs, r.Cold,
					r.Outcome, r.ErrorType, r.Instance,
					r.Trigger, r.CPUMs, r.Arch, r.TraceID, r.Qualifier)
			}, nil)
		if err != nil {
			return err
		}
		// A record without a start has no minute to count in.
		mins := make([]stratus.UsageMinute, 0, len(recs))
		for i := range recs {
			if !recs[i].Start.IsZero() {
				mins = append(mins, stratus.MinuteOf(recs[i]))
			}
		}
		return addMinutes(ctx, tx, mins)
	})
	if err != nil {
		return fmt.Errorf("insert %d invocations: %w", len(recs), err)
	}
	return nil
}

// InvocationQuery selects invocation records of a function.
type InvocationQuery struct {
	// RequestID, if set, selects the records of that request.
	RequestID string
	// Since, if set, selects records that started at or after it.
	Since time.Time
	// Limit is the most records returned: DefaultInvocationLimit if zero
	// or less, at most MaxInvocationLimit.
	Limit int
}

// ListInvocations returns the invocation records of function fn that q
// selects, newest first.
func (s *Store) ListInvocations(ctx context.Context, fn string, q InvocationQuery) ([]stratus.Invocation, error) {
	var b strings.Builder
	b.WriteString(`SELECT request_id, version, start, duration_ms, billed_ms, memory_mb, max_memory_mb,
		init_duration_ms, cold, outcome, error_type, instance, "trigger", cpu_ms, arch, trace_id, qualifier FROM invocations`)
	if q.RequestID != "" && s.dialect == dialectSQLite {
		// A request has a record or a few; without this the planner
		// prefers walking the function's records in start order.
		b.WriteString(` INDEXED BY invocations_request_id`)
	}
	b.WriteString(` WHERE function = ?`)
	args := []any{fn}
	if q.RequestID != "" {
		b.WriteString(` AND request_id = ?`)
		args = append(args, q.RequestID)
	}
	if !q.Since.IsZero() {
		b.WriteString(` AND start >= ?`)
		args = append(args, q.Since.UnixNano())
	}
	b.WriteString(` ORDER BY start DESC, id DESC LIMIT ?`)
	args = append(args, limit(q.Limit, DefaultInvocationLimit, MaxInvocationLimit))

	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list invocations of %q: %w", fn, err)
	}
	defer rows.Close()
	recs := []stratus.Invocation{}
	for rows.Next() {
		r := stratus.Invocation{Function: fn}
		var start int64
		if err := rows.Scan(&r.RequestID, &r.Version, &start, &r.DurationMs, &r.BilledMs, &r.MemoryMB,
			&r.MaxMemoryMB, &r.InitDurationMs, &r.Cold, &r.Outcome, &r.ErrorType, &r.Instance,
			&r.Trigger, &r.CPUMs, &r.Arch, &r.TraceID, &r.Qualifier); err != nil {
			return nil, fmt.Errorf("list invocations of %q: %w", fn, err)
		}
		r.Start = fromNanos(start)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list invocations of %q: %w", fn, err)
	}
	return recs, nil
}

// pruneInvocations deletes the records of fn that started before cutoff
// (unix nanoseconds; 0 for none) and all but the newest keep (0 for no
// bound). It deletes by threshold through the (function, start) index.
func pruneInvocations(ctx context.Context, tx *sql.Tx, fn string, keep int, cutoff int64) (int64, error) {
	var deleted int64
	del := func(query string, args ...any) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		deleted += n
		return err
	}
	if cutoff > 0 {
		if err := del(`DELETE FROM invocations WHERE function = ? AND start < ?`, fn, cutoff); err != nil {
			return 0, err
		}
	}
	if keep > 0 {
		var start, id int64 // the newest record beyond those kept
		err := tx.QueryRowContext(ctx, `SELECT start, id FROM invocations WHERE function = ?
			ORDER BY start DESC, id DESC LIMIT 1 OFFSET ?`, fn, keep).Scan(&start, &id)
		switch {
		case errors.Is(err, sql.ErrNoRows): // nothing beyond the bound
			err = nil
		case err == nil:
			// (start, id) <= the threshold, written so that the index
			// bounds start.
			err = del(`DELETE FROM invocations WHERE function = ? AND start <= ? AND (start < ? OR id <= ?)`,
				fn, start, start, id)
		}
		if err != nil {
			return 0, err
		}
	}
	return deleted, nil
}

// limit is n bounded to [1, most], def if n is zero or less.
func limit(n, def, most int) int {
	if n <= 0 {
		return def
	}
	return min(n, most)
}
