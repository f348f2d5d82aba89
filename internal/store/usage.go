package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// minuteKey is the primary key of a usage minute.
type minuteKey struct {
	kind, name string
	minute     int64
}

// addMinutes adds us to the stored minutes in tx: entries of one key are
// summed in Go first (UsageMinute.Add), then each sum is added to its row, or
// becomes it, the same way in SQL.
func addMinutes(ctx context.Context, tx *sql.Tx, us []stratus.UsageMinute) error {
	if len(us) == 0 {
		return nil
	}
	sums := map[minuteKey]int{} // index in order
	var order []stratus.UsageMinute
	for i := range us {
		u := &us[i]
		k := minuteKey{u.Kind, u.Name, nanos(u.Minute)}
		if j, ok := sums[k]; ok {
			order[j].Add(*u)
			continue
		}
		sums[k] = len(order)
		order = append(order, *u)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO usage_minutes (kind, name, minute, requests, errors,
			cold_starts, duration_ms, max_duration_ms, billed_ms, init_ms, cpu_ms, gb_seconds, vcpu_seconds,
			max_in_flight, replicas, memory_mb, vcpu, arch)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, name, minute) DO UPDATE SET
			requests = usage_minutes.requests + excluded.requests,
			errors = usage_minutes.errors + excluded.errors,
			cold_starts = usage_minutes.cold_starts + excluded.cold_starts,
			duration_ms = usage_minutes.duration_ms + excluded.duration_ms,
			max_duration_ms = CASE WHEN excluded.max_duration_ms > usage_minutes.max_duration_ms THEN excluded.max_duration_ms ELSE usage_minutes.max_duration_ms END,
			billed_ms = usage_minutes.billed_ms + excluded.billed_ms,
			init_ms = usage_minutes.init_ms + excluded.init_ms,
			cpu_ms = usage_minutes.cpu_ms + excluded.cpu_ms,
			gb_seconds = usage_minutes.gb_seconds + excluded.gb_seconds,
			vcpu_seconds = usage_minutes.vcpu_seconds + excluded.vcpu_seconds,
			max_in_flight = CASE WHEN excluded.max_in_flight > usage_minutes.max_in_flight THEN excluded.max_in_flight ELSE usage_minutes.max_in_flight END,
			replicas = usage_minutes.replicas + excluded.replicas,
			memory_mb = excluded.memory_mb,
			vcpu = excluded.vcpu,
			arch = excluded.arch`)
	if err != nil {
		return fmt.Errorf("add usage minutes: %w", err)
	}
	defer stmt.Close()
	for i := range order {
		u := &order[i]
		if _, err := stmt.ExecContext(ctx, u.Kind, u.Name, nanos(u.Minute), u.Requests, u.Errors,
			u.ColdStarts, u.DurationMs, u.MaxDuration, u.BilledMs, u.InitMs, u.CPUMs, u.GBSeconds, u.VCPUSeconds,
			u.MaxInFlight, u.Replicas, u.MemoryMB, u.VCPU, u.Arch); err != nil {
			return fmt.Errorf("add usage minutes: %w", err)
		}
	}
	return nil
}

// AddUsageMinutes adds us to the stored usage minutes in one transaction:
// a minute already stored (same Kind, Name and Minute) gets the counts,
// times and replicas added, the larger MaxDuration and MaxInFlight, and
// the later memory, vCPU and arch; a new one is stored as it is. A minute
// reported in parts therefore sums its parts (a service reporting part of
// a minute gives its share of the minute in Replicas). Functions' minutes
// come from InsertInvocations; this is for services'.
func (s *Store) AddUsageMinutes(ctx context.Context, us []stratus.UsageMinute) error {
	if len(us) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error { return addMinutes(ctx, tx, us) })
	if err != nil {
		return fmt.Errorf("store %d usage minutes: %w", len(us), err)
	}
	return nil
}

// InsertReplicaUsages records the lives of services' replicas in one
// transaction. A life is keyed by service, replica and start: reporting
// it again (while it runs, with End the time of the report, then at its
// end) replaces what was stored.
func (s *Store) InsertReplicaUsages(ctx context.Context, us []stratus.ReplicaUsage) error {
	if len(us) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO replica_usage (service, revision, replica,
				start_time, end_time, vcpu, memory_mb, cpu_ms, requests, arch)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (service, replica, start_time) DO UPDATE SET revision = excluded.revision,
				end_time = excluded.end_time, vcpu = excluded.vcpu, memory_mb = excluded.memory_mb,
				cpu_ms = excluded.cpu_ms, requests = excluded.requests, arch = excluded.arch`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range us {
			u := &us[i]
			if _, err := stmt.ExecContext(ctx, u.Service, u.Revision, u.Replica, nanos(u.Start), nanos(u.End),
				u.CPU, u.MemoryMB, u.CPUMs, u.Requests, u.Arch); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %d replica lives: %w", len(us), err)
	}
	return nil
}

// UsageQuery selects usage minutes.
type UsageQuery struct {
	// Kind (KindFunction or KindService) and Name select one kind or one
	// workload; empty selects all.
	Kind, Name string
	// Since, if set, selects minutes that begin at or after it; Until, if
	// set, minutes that begin before it.
	Since, Until time.Time
}

// UsageMinutes returns the usage minutes q selects, ordered by kind, name
// and minute.
func (s *Store) UsageMinutes(ctx context.Context, q UsageQuery) ([]stratus.UsageMinute, error) {
	var b strings.Builder
	b.WriteString(`SELECT kind, name, minute, requests, errors, cold_starts, duration_ms, max_duration_ms,
		billed_ms, init_ms, cpu_ms, gb_seconds, vcpu_seconds, max_in_flight, replicas, memory_mb, vcpu, arch
		FROM usage_minutes WHERE 1 = 1`)
	var args []any
	if q.Kind != "" {
		b.WriteString(` AND kind = ?`)
		args = append(args, q.Kind)
	}
	if q.Name != "" {
		b.WriteString(` AND name = ?`)
		args = append(args, q.Name)
	}
	if !q.Since.IsZero() {
		b.WriteString(` AND minute >= ?`)
		args = append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		b.WriteString(` AND minute < ?`)
		args = append(args, q.Until.UnixNano())
	}
	b.WriteString(` ORDER BY kind, name, minute`)
	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list usage minutes: %w", err)
	}
	defer rows.Close()
	us := []stratus.UsageMinute{}
	for rows.Next() {
		var u stratus.UsageMinute
		var minute int64
		if err := rows.Scan(&u.Kind, &u.Name, &minute, &u.Requests, &u.Errors, &u.ColdStarts, &u.DurationMs,
			&u.MaxDuration, &u.BilledMs, &u.InitMs, &u.CPUMs, &u.GBSeconds, &u.VCPUSeconds, &u.MaxInFlight,
			&u.Replicas, &u.MemoryMB, &u.VCPU, &u.Arch); err != nil {
			return nil, fmt.Errorf("list usage minutes: %w", err)
		}
		u.Minute = fromNanos(minute)
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list usage minutes: %w", err)
	}
	return us, nil
}

// ReplicaUsages returns the lives of service's replicas (of every
// service's if service is empty) that overlap the window [since, until):
// that began before until and ended after since (a life still running
// ends when it was last reported). A zero since or until leaves that side
// open. They are ordered by service,
// start and replica.
func (s *Store) ReplicaUsages(ctx context.Context, service string, since, until time.Time) ([]stratus.ReplicaUsage, error) {
	var b strings.Builder
	b.WriteString(`SELECT service, revision, replica, start_time, end_time, vcpu, memory_mb, cpu_ms, requests, arch
		FROM replica_usage WHERE 1 = 1`)
	var args []any
	if service != "" {
		b.WriteString(` AND service = ?`)
		args = append(args, service)
	}
	if !since.IsZero() {
		b.WriteString(` AND end_time > ?`)
		args = append(args, since.UnixNano())
	}
	if !until.IsZero() {
		b.WriteString(` AND start_time < ?`)
		args = append(args, until.UnixNano())
	}
	b.WriteString(` ORDER BY service, start_time, replica`)
	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list replica lives: %w", err)
	}
	defer rows.Close()
	us := []stratus.ReplicaUsage{}
	for rows.Next() {
		var u stratus.ReplicaUsage
		var start, end int64
		if err := rows.Scan(&u.Service, &u.Revision, &u.Replica, &start, &end, &u.CPU, &u.MemoryMB,
			&u.CPUMs, &u.Requests, &u.Arch); err != nil {
			return nil, fmt.Errorf("list replica lives: %w", err)
		}
		u.Start, u.End = fromNanos(start), fromNanos(end)
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replica lives: %w", err)
	}
	return us, nil
}

// pruneUsageRows is the most rows one of PruneUsage's transactions
// deletes, so that writers never wait long behind it.
const pruneUsageRows = 5000

// PruneUsage deletes the usage minutes that began and the replica lives
// that ended more than maxAge ago (nothing if maxAge is zero or less). It
// returns how many rows it deleted. Usage is history kept longer than
// records (a month's advice reads it) and outlives the workloads it is
// of: DeleteFunction and DeleteService leave it, and only age removes it.
func (s *Store) PruneUsage(ctx context.Context, maxAge time.Duration) (int64, error) {
	if maxAge <= 0 {
		return 0, nil
	}
	cutoff := s.now().Add(-maxAge).UnixNano()
	var total int64
	for _, t := range []struct{ table, query string }{
		{"usage minutes", `DELETE FROM usage_minutes WHERE (kind, name, minute) IN
			(SELECT kind, name, minute FROM usage_minutes WHERE minute < ? LIMIT ?)`},
		{"replica lives", `DELETE FROM replica_usage WHERE id IN
			(SELECT id FROM replica_usage WHERE end_time < ? LIMIT ?)`},
	} {
		for {
			var n int64
			err := s.write(ctx, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, t.query, cutoff, pruneUsageRows)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			if err != nil {
				return total, fmt.Errorf("prune %s: %w", t.table, err)
			}
			total += n
			if n < pruneUsageRows {
				break
			}
		}
	}
	return total, nil
}
