package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stratus-run/stratus"
)

// CreateSchedule stores a new schedule, or returns an error wrapping
// stratus.ErrConflict if one of that name exists. It stores sc as given,
// CreatedAt and LastFiredAt included.
func (s *Store) CreateSchedule(ctx context.Context, sc stratus.Schedule) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM schedules WHERE name = ?`, sc.Name).Scan(&n)
		switch {
		case err == nil:
			return fmt.Errorf("schedule %q already exists: %w", sc.Name, stratus.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schedules
			(name, function, expression, timezone, data, created_at, last_fired_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			sc.Name, sc.Function, sc.Expression, sc.Timezone, string(sc.Data), nanos(sc.CreatedAt), nanos(sc.LastFiredAt))
		return err
	})
	if err != nil {
		if errors.Is(err, stratus.ErrConflict) {
			return err
		}
		return fmt.Errorf("create schedule %q: %w", sc.Name, err)
	}
	return nil
}

const selectSchedule = `SELECT name, function, expression, timezone, data, created_at, last_fired_at FROM schedules`

func scanSchedule(row scanner) (stratus.Schedule, error) {
	var (
		sc             stratus.Schedule
		data           string
		created, fired int64
	)
	if err := row.Scan(&sc.Name, &sc.Function, &sc.Expression, &sc.Timezone, &data, &created, &fired); err != nil {
		return stratus.Schedule{}, err
	}
	if data != "" {
		sc.Data = []byte(data)
	}
	sc.CreatedAt, sc.LastFiredAt = fromNanos(created), fromNanos(fired)
	return sc, nil
}

// ListSchedules returns every schedule, ordered by name.
func (s *Store) ListSchedules(ctx context.Context) ([]stratus.Schedule, error) {
	rows, err := s.r.QueryContext(ctx, selectSchedule+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	defer rows.Close()
	out := []stratus.Schedule{}
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}

// GetSchedule returns schedule name, or an error wrapping
// stratus.ErrNotFound.
func (s *Store) GetSchedule(ctx context.Context, name string) (*stratus.Schedule, error) {
	sc, err := scanSchedule(s.r.QueryRowContext(ctx, selectSchedule+` WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("schedule %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get schedule %q: %w", name, err)
	}
	return &sc, nil
}

// DeleteSchedule removes schedule name, or returns an error wrapping
// stratus.ErrNotFound.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	return s.updateSchedule(ctx, "delete", name, `DELETE FROM schedules WHERE name = ?`, name)
}

// SetLastFired records t as the scheduled time of schedule name's last
// firing, or returns an error wrapping stratus.ErrNotFound.
func (s *Store) SetLastFired(ctx context.Context, name string, t time.Time) error {
	// Never backwards: a server that records a firing late (another
	// server of a cluster recorded a later one meanwhile) changes nothing.
	return s.updateSchedule(ctx, "update", name,
		`UPDATE schedules SET last_fired_at = CASE WHEN last_fired_at < ? THEN ? ELSE last_fired_at END WHERE name = ?`,
		nanos(t), nanos(t), name)
}

// updateSchedule runs one statement that changes schedule name's row.
func (s *Store) updateSchedule(ctx context.Context, op, name, query string, args ...any) error {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s schedule %q: %w", op, name, classify(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s schedule %q: %w", op, name, err)
	} else if n == 0 {
		return fmt.Errorf("schedule %q: %w", name, stratus.ErrNotFound)
	}
	return nil
}
