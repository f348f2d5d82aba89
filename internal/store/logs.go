package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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
		if s.dialect == dialectPostgres {
			// Writers of logs take turns, so that IDs grow in the order
			// their lines commit: a follower reading after an ID never
			// misses a line committed later with a smaller one.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, logsLockKey); err != nil {
				return err
			}
		}
		return s.insertRows(ctx, tx, `INSERT INTO logs (function, time, request_id, instance, stream, text)`,
			6, len(lines), func(a []any, i int) []any {
				l := &lines[i]
				return append(a, l.Function, nanos(l.Time), l.RequestID, l.Instance, l.Stream, l.Text)
			}, func(first int, rows []int64) {
				for j, row := range rows {
					ids[first+j] = lineID(row)
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
	// Qualifier, if set, selects the lines of the instances that ran that
	// version of the function (stratus.LatestVersion or a published
	// version's number): those with an invocation record of it.
	Qualifier string
}

// ListLogs returns the log lines of function fn that q selects, oldest
// first (by ID). Line IDs are the rows' IDs doubled, plus one: a stored
// report line (row k) comes back as two lines, END (2k) and REPORT
// (2k+1), so a page may hold more lines than the limit. AfterID takes line
// IDs.
func (s *Store) ListLogs(ctx context.Context, fn string, q LogQuery) ([]stratus.LogLine, error) {
	var b strings.Builder
	b.WriteString(`SELECT id, time, request_id, instance, stream, text FROM logs`)
	if q.RequestID != "" && s.dialect == dialectSQLite {
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
	if q.Qualifier != "" {
		// Records stored before qualifiers were kept ran $LATEST.
		b.WriteString(` AND instance IN (SELECT instance FROM invocations WHERE function = ? AND (qualifier = ? OR (? = '$LATEST' AND qualifier = '')))`)
		args = append(args, fn, q.Qualifier, q.Qualifier)
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

// tailBatch is how many rows TailLogs reads per query.
const tailBatch = 32

// tailQuery reads TailLogs' rows in each dialect, the last maxBytes
// bytes of each line's text (the first argument).
var tailQuery = map[string]string{
	dialectSQLite: `SELECT id, time, instance, stream, substr(CAST(text AS BLOB), -?)
		FROM logs INDEXED BY logs_request_id
		WHERE request_id = ? AND function = ? AND id < ? ORDER BY id DESC LIMIT ?`,
	dialectPostgres: `SELECT id, time, instance, stream, substring(convert_to(text, 'UTF8')
			FROM greatest(octet_length(convert_to(text, 'UTF8')) - $1 + 1, 1))
		FROM logs
		WHERE request_id = $2 AND function = $3 AND id < $4 ORDER BY id DESC LIMIT $5`,
}

// TailLogs returns the last lines of request requestID of function fn,
// oldest first as ListLogs reads them (a report row is its END and
// REPORT lines): the newest lines that hold maxBytes of text, each
// counted with a newline, or all of them when they hold less. It reads
// the newest rows first and stops once it has maxBytes, and at most the
// last maxBytes bytes of any one line (a line cut so starts at a UTF-8
// character's start), so its cost does not grow with the request's log.
func (s *Store) TailLogs(ctx context.Context, fn, requestID string, maxBytes int) ([]stratus.LogLine, error) {
	var rev []stratus.LogLine // newest first
	total := 0
	before := int64(math.MaxInt64)
	add := func(l stratus.LogLine) {
		rev = append(rev, l)
		total += len(l.Text) + 1
	}
	for total < maxBytes {
		rows, err := s.r.QueryContext(ctx, tailQuery[s.dialect], maxBytes, requestID, fn, before, tailBatch)
		if err != nil {
			return nil, fmt.Errorf("tail logs of %q: %w", fn, err)
		}
		n := 0
		for total < maxBytes && rows.Next() {
			n++
			l := stratus.LogLine{Function: fn, RequestID: requestID}
			var t int64
			var text []byte
			if err := rows.Scan(&before, &t, &l.Instance, &l.Stream, &text); err != nil {
				rows.Close()
				return nil, fmt.Errorf("tail logs of %q: %w", fn, err)
			}
			if len(text) == maxBytes {
				text = trimPartialRune(text)
			}
			l.Time, l.ID, l.Text = fromNanos(t), lineID(before), string(text)
			if l.Stream != stratus.StreamReport {
				add(l)
				continue
			}
			end := l
			end.ID = lineID(before) - 1
			end.Stream, end.Text = stratus.StreamPlatform, "END RequestId: "+requestID
			l.Stream = stratus.StreamPlatform
			add(l)
			add(end)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("tail logs of %q: %w", fn, err)
		}
		if n < tailBatch {
			break
		}
	}
	slices.Reverse(rev)
	if rev == nil {
		rev = []stratus.LogLine{}
	}
	return rev, nil
}

// trimPartialRune drops the UTF-8 continuation bytes b starts with (at
// most 3): the rest of a character cut off before b.
func trimPartialRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return b
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
				FROM (SELECT id, stream FROM logs WHERE function = ? ORDER BY id DESC LIMIT ?) AS newest
			) AS counted WHERE n > ? ORDER BY id DESC LIMIT 1`, fn, keep+1, keep).Scan(&last)
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
