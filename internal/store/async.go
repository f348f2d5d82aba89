package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// PutAsyncStatuses records the latest state of asynchronous invocations,
// in one transaction. Statuses may arrive in any order, from servers whose
// clocks disagree: a state replaces the stored one only if it comes later
// in the invocation's progress (see asyncNewer), so an invocation that
// reached a final state never shows a live one again unless it runs again,
// and a finished invocation is never queued again (a duplicate enqueue of
// the same request ID is not run).
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
			WHERE `+asyncNewer)
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

// asyncNewer is the condition under which a status (excluded) replaces the
// stored one (async_invocations) of the same invocation. The Queue's
// transitions are queued (attempt k: k attempts made) → running (attempt
// k+1) → retrying (attempt k+1 failed, k+1 made) → running (k+2) … →
// succeeded or failed (the last attempt made); a throttled run is handed
// back: running (k+1) → queued (k). Each server stamps updated_at with its
// own clock, so the order is by progress, and updated_at only decides
// between two statuses at the same point (a final state and the same with
// its destination, reported by one server) and for a hand back:
//   - a final state replaces any live one (whatever their attempts: a
//     failure for a function gone keeps the attempts made before);
//   - a final state replaces a final one of an earlier attempt, or of the
//     same attempt if newer;
//   - a live state replaces a final one only for a later attempt (the
//     event ran again, at least once), and never when queued;
//   - between live states, a later attempt wins; within an attempt the
//     higher state (queued < running < retrying), then the newer;
//   - queued at attempt k replaces running at k+1 if newer (hand back).
var asyncNewer = func() string {
	rank := func(t string) string {
		return `(CASE ` + t + `.state WHEN '` + stratus.AsyncQueued + `' THEN 1 WHEN '` + stratus.AsyncRunning + `' THEN 2
			WHEN '` + stratus.AsyncRetrying + `' THEN 3 WHEN '` + stratus.AsyncSucceeded + `' THEN 4
			WHEN '` + stratus.AsyncFailed + `' THEN 4 ELSE 0 END)`
	}
	n, o := rank("excluded"), rank("async_invocations")
	const (
		newer = `excluded.updated_at >= async_invocations.updated_at`
		later = `excluded.attempt > async_invocations.attempt`
		same  = `excluded.attempt = async_invocations.attempt`
	)
	return `(` + n + ` = 4 AND ` + o + ` < 4)
		OR (` + n + ` = 4 AND ` + o + ` = 4 AND (` + later + ` OR (` + same + ` AND ` + newer + `)))
		OR (` + n + ` < 4 AND ` + o + ` = 4 AND ` + later + ` AND excluded.state <> '` + stratus.AsyncQueued + `')
		OR (` + n + ` < 4 AND ` + o + ` < 4 AND (` + later + ` OR (` + same + ` AND (` + n + ` > ` + o + `
			OR (` + n + ` = ` + o + ` AND ` + newer + `)))))
		OR (excluded.state = '` + stratus.AsyncQueued + `' AND async_invocations.state = '` + stratus.AsyncRunning + `'
			AND excluded.attempt = async_invocations.attempt - 1 AND ` + newer + `)`
}()

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
