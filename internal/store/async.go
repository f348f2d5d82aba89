package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// PutAsyncStatuses records the latest state of asynchronous invocations,
// in one transaction. A state older than the one stored is ignored, so
// statuses may arrive in any order, and a finished invocation is never
// queued again (a duplicate enqueue of the same request ID is not run).
func (s *Store) PutAsyncStatuses(ctx context.Context, sts []stratus.AsyncStatus) error {
	if len(sts) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO async_invocations
			(request_id, function, state, attempt, enqueued_at, updated_at, error_type, error_message,
				destination, destination_state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (request_id) DO UPDATE SET state = excluded.state, attempt = excluded.attempt,
				updated_at = excluded.updated_at, error_type = excluded.error_type, error_message = excluded.error_message,
				destination = excluded.destination, destination_state = excluded.destination_state
			WHERE excluded.updated_at >= async_invocations.updated_at
				AND NOT (async_invocations.state IN ('succeeded', 'failed') AND excluded.state = 'queued')`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range sts {
			st := &sts[i]
			if _, err := stmt.ExecContext(ctx, st.RequestID, st.Function, st.State, st.Attempt,
				nanos(st.EnqueuedAt), nanos(st.UpdatedAt), st.ErrorType, st.ErrorMessage,
				st.Destination, st.DestinationState); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %d async statuses: %w", len(sts), err)
	}
	return nil
}

// GetAsyncStatus returns the state of the asynchronous invocation id.
func (s *Store) GetAsyncStatus(ctx context.Context, id string) (*stratus.AsyncStatus, error) {
	var st stratus.AsyncStatus
	var enq, upd int64
	err := s.r.QueryRowContext(ctx, `SELECT request_id, function, state, attempt, enqueued_at, updated_at, error_type, error_message,
		destination, destination_state
		FROM async_invocations WHERE request_id = ?`, id).Scan(&st.RequestID, &st.Function, &st.State, &st.Attempt,
		&enq, &upd, &st.ErrorType, &st.ErrorMessage, &st.Destination, &st.DestinationState)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("invocation %q: %w", id, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get invocation %q: %w", id, err)
	}
	st.EnqueuedAt, st.UpdatedAt = fromNanos(enq), fromNanos(upd)
	return &st, nil
}

// pruneAsync deletes the finished async states of fn last updated before
// cutoff and all but the newest keep.
func pruneAsync(ctx context.Context, tx *sql.Tx, fn string, keep int, cutoff int64) (int64, error) {
	var deleted int64
	done := `state IN ('` + stratus.AsyncSucceeded + `', '` + stratus.AsyncFailed + `')`
	if cutoff > 0 {
		res, err := tx.ExecContext(ctx, `DELETE FROM async_invocations WHERE function = ? AND updated_at < ? AND `+done, fn, cutoff)
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		deleted += n
	}
	if keep > 0 {
		var upd int64
		err := tx.QueryRowContext(ctx, `SELECT updated_at FROM async_invocations WHERE function = ?
			ORDER BY updated_at DESC LIMIT 1 OFFSET ?`, fn, keep).Scan(&upd)
		if errors.Is(err, sql.ErrNoRows) {
			return deleted, nil
		}
		if err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM async_invocations WHERE function = ? AND updated_at <= ? AND `+done, fn, upd)
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		deleted += n
	}
	return deleted, nil
}
