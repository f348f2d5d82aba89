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

// Limits of ListLogs.
const (
	DefaultLogLimit = 1000
	MaxLogLimit     = 10000
)

// InsertLogs records lines in one transaction and sets each line's ID.
// IDs increase in insertion order and are never reused.
func (s *Store) InsertLogs(ctx context.Context, lines []stratus.LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	ids := make([]int64, len(lines))
	err := s.write(ctx, func(tx *sql.Tx) error {
		return insertRows(ctx, tx, `INSERT INTO logs (function, time, request_id, instance, stream, text)`,
			6, len(lines), func(a []any, i int) []any {
				l := &lines[i]
				return append(a, l.Function, nanos(l.Time), l.RequestID, l.Instance, l.Stream, l.Text)
			}, func(first, count int, last int64) {
				// One statement's rows get consecutive rowids.
				for j := 0; j < count; j++ {
					ids[first+j] = lineID(last - int64(count-1-j))
				}
			})
	})
	if err != nil {
		return fmt.Errorf("insert %d log lines: %w", len(lines), err)
	}
	// Only now that they are committed do the lines get their IDs.
	for i := range lines {
		lines[i].ID = ids[i]
	}
	return nil
}

// LogQuery selects log lines of a function.
type LogQuery struct {
	// RequestID, if set, selects the lines of that request.
	RequestID string
	// Since, if set, selects lines written at or after it.
	Since time.Time
	// AfterID selects lines whose ID is greater: the last ID a follower
	// has seen.
	AfterID int64
	// Limit is the most lines returned: DefaultLogLimit if zero or less, at
	// most MaxLogLimit.
	Limit int
}

// ListLogs returns the log lines of function fn that q selects, oldest
// first (by ID). Line IDs are the rows' IDs doubled, plus one: a stored
// report line (row k) comes back as two lines, END (2k) and REPORT
// (2k+1), so a page may hold more lines than the limit. AfterID takes line
// IDs.
func (s *Store) ListLogs(ctx context.Context, fn string, q LogQuery) ([]stratus.LogLine, error) {
	var b strings.Builder
	b.WriteString(`SELECT id, time, request_id, instance, stream, text FROM logs`)
	if q.RequestID != "" {
		b.WriteString(` INDEXED BY logs_request_id`) // a request has a few lines
	}
	b.WriteString(` WHERE function = ?`)
	args := []any{fn}
	if q.AfterID > 0 {
		// Line IDs are row IDs doubled (see ListLogs); row k holds lines
		// 2k and 2k+1.
		b.WriteString(` AND id >= ?`)
		args = append(args, (q.AfterID+1)/2)
	}
	if q.RequestID != "" {
		b.WriteString(` AND request_id = ?`)
		args = append(args, q.RequestID)
	}
	if !q.Since.IsZero() {
		b.WriteString(` AND time >= ?`)
		args = append(args, q.Since.UnixNano())
	}
	b.WriteString(` ORDER BY id LIMIT ?`)
	args = append(args, limit(q.Limit, DefaultLogLimit, MaxLogLimit))

	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list logs of %q: %w", fn, err)
	}
	defer rows.Close()
	lines := []stratus.LogLine{}
	for rows.Next() {
		l := stratus.LogLine{Function: fn}
		var t int64
		if err := rows.Scan(&l.ID, &t, &l.RequestID, &l.Instance, &l.Stream, &l.Text); err != nil {
			return nil, fmt.Errorf("list logs of %q: %w", fn, err)
		}
		l.Time = fromNanos(t)
		row := l.ID
		l.ID = lineID(row)
		if l.Stream == stratus.StreamReport {
			// Stored once, read as Lambda prints it: END, then REPORT.
			end := l
			end.ID = lineID(row) - 1
			end.Stream, end.Text = stratus.StreamPlatform, "END RequestId: "+l.RequestID
			l.Stream = stratus.StreamPlatform
			if end.ID > q.AfterID {
				lines = append(lines, end)
			}
		}
		if l.ID > q.AfterID {
			lines = append(lines, l)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list logs of %q: %w", fn, err)
	}
	return lines, nil
}

// pruneLogs deletes the lines of fn older than cutoff (unix nanoseconds; 0
// for none) and all but the newest keep (0 for no bound). It deletes by ID
// threshold through the (function, id) index. For age it deletes the lines
// before the first one at or after cutoff, so a line written with an old
// time after a newer line stays until the count bound removes it.
func pruneLogs(ctx context.Context, tx *sql.Tx, fn string, keep int, cutoff int64) (int64, error) {
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
		var first int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM logs WHERE function = ? AND time >= ?
			ORDER BY id LIMIT 1`, fn, cutoff).Scan(&first)
		switch {
		case errors.Is(err, sql.ErrNoRows): // every line is old
			err = del(`DELETE FROM logs WHERE function = ?`, fn)
		case err == nil:
			err = del(`DELETE FROM logs WHERE function = ? AND id < ?`, fn, first)
		}
		if err != nil {
			return 0, err
		}
	}
	if keep > 0 {
		// The newest row beyond those kept, counting lines as they read
		// back: a report row is two lines (END, REPORT). The bound lies
		// within the newest keep+1 rows.
		var last int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM (
				SELECT id, SUM(CASE stream WHEN '`+stratus.StreamReport+`' THEN 2 ELSE 1 END) OVER (ORDER BY id DESC) AS n
				FROM (SELECT id, stream FROM logs WHERE function = ? ORDER BY id DESC LIMIT ?)
			) WHERE n > ? ORDER BY id DESC LIMIT 1`, fn, keep+1, keep).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows): // nothing beyond the bound
			err = nil
		case err == nil:
			err = del(`DELETE FROM logs WHERE function = ? AND id <= ?`, fn, last)
		}
		if err != nil {
			return 0, err
		}
	}
	return deleted, nil
}

// lineID is the ID of the line stored in row: rows' IDs doubled, plus one,
// leaving room for the END line a report row reads back as.
func lineID(row int64) int64 { return 2*row + 1 }
