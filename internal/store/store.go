// Package store keeps Stratus's state in one SQLite file: functions and
// their immutable versions, services and their revisions, invocation
// records, log lines, async invocation states, topics and schedules, and
// the metered usage of functions and services (usage minutes, replica
// lives), which outlives the records and the workloads (see PruneUsage).
//
// Functions and services share one namespace of names (their routes
// /fn/NAME, /svc/NAME and NAME.<domain> meet in the gateway): the names
// table holds each name once, with its kind. PutVersion and PutRevision
// claim the name in the transaction that records the deploy, a service
// also before its replicas start (ClaimServiceName); DeleteFunction and
// DeleteService free it. Topics and schedules have names of their own
// (/v1/topics/NAME, /v1/schedules/NAME) and are not in it.
//
// Open applies the embedded migrations (migrations/*.sql) in one
// transaction, recording each in the schema_version table. The file is in
// WAL mode and is reached through two connection pools: a single write
// connection, so writers queue in Go instead of failing with SQLITE_BUSY,
// and several read-only connections that read concurrently with it.
//
// Times are stored as unix nanoseconds and read back in UTC; a zero
// time.Time is stored as 0 and read back as the zero time. A Store is safe
// for concurrent use.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/stratus-run/stratus"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection (another process, or the write connection during a
// checkpoint) before giving up with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a Stratus database. Create it with Open and release it with
// Close.
type Store struct {
	w *sql.DB // one connection: every write goes through it
	r *sql.DB // read-only connections

	now func() time.Time // the clock; tests replace it
}

// Open opens or creates the database file at path, configures it and
// brings its schema up to date. The file and its -wal and -shm files are
// the owner's only (0600); Open narrows a wider mode they were left with.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := restrictFiles(path); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	w, err := sql.Open("sqlite", dsn(path,
		"journal_mode(WAL)",
		"synchronous(NORMAL)",
		"foreign_keys(1)",
	)+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := dropStaleClaims(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", dsn(path,
		"foreign_keys(1)",
		"query_only(1)",
	))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return &Store{w: w, r: r, now: time.Now}, nil
}

// restrictFiles makes the database file at path readable by its owner
// only: it creates the file with mode 0600 when it does not exist, and
// narrows an existing one, and its -wal and -shm files, to 0600. SQLite
// creates the -wal and -shm files with the mode of the database file.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// dsn is the data source name of the file at path with the given pragmas
// and the busy timeout. The path is escaped so that names holding '?' or
// '#' stay names.
func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close closes the database. Callers stop using the Store first; calls
// after Close fail.
func (s *Store) Close() error {
	// Let SQLite refresh its planner statistics while it still can;
	// failing to do so loses nothing.
	_, _ = s.w.Exec("PRAGMA optimize")
	return errors.Join(s.r.Close(), s.w.Close())
}

// write runs fn in a transaction on the write connection and commits it
// if fn returns nil. Its errors are classified (see classify).
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("begin transaction: %w", err))
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return classify(err)
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("commit transaction: %w", err))
	}
	return nil
}

// SQLite's primary result codes that say the disk is full.
const (
	sqliteFull = 13 // SQLITE_FULL: "database or disk is full"
)

// classify adds stratus.ErrNoSpace to an error of SQLite that says the
// disk is full (SQLITE_FULL, which SQLite also answers for ENOSPC while it
// writes the database, its journal or its WAL), so that the edges answer
// 507 and readiness says why.
func classify(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, stratus.ErrNoSpace) || !errors.As(err, &se) {
		return err
	}
	if se.Code()&0xff == sqliteFull {
		return fmt.Errorf("%w: %w", err, stratus.ErrNoSpace)
	}
	return err
}

// nanos is t as stored: unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the time stored as n.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// rowsPerInsert is how many rows one INSERT statement carries: one
// statement for many rows costs SQLite far less than a statement per row.
const rowsPerInsert = 64

// insertRows inserts n rows of cols columns with "prefix VALUES (?,…),…"
// statements of up to rowsPerInsert rows; add appends row i's values. It
// calls done(first, count, lastID) after each statement: the rowids of
// rows first..first+count-1 are lastID-count+1..lastID.
func insertRows(ctx context.Context, tx *sql.Tx, prefix string, cols, n int,
	add func(args []any, i int) []any, done func(first, count int, lastID int64)) error {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, cols*rowsPerInsert)
	for first := 0; first < n; first += rowsPerInsert {
		count := min(rowsPerInsert, n-first)
		st := stmts[count]
		if st == nil {
			q := prefix + " VALUES " + strings.TrimSuffix(strings.Repeat(row+",", count), ",")
			var err error
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return err
			}
			stmts[count] = st
		}
		args = args[:0]
		for i := first; i < first+count; i++ {
			args = add(args, i)
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		if done != nil {
			last, err := res.LastInsertId()
			if err != nil {
				return err
			}
			done(first, count, last)
		}
	}
	return nil
}
