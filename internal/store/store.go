// Package store keeps Stratus's state in a SQLite file or a PostgreSQL
// database: functions and their immutable versions, services and their
// revisions, invocation records, log lines, async invocation states,
// topics and schedules, and the metered usage of functions and services
// (usage minutes, replica lives), which outlives the records and the
// workloads (see PruneUsage).
//
// Functions and services share one namespace of names (their routes
// /fn/NAME, /svc/NAME and NAME.<domain> meet in the gateway): the names
// table holds each name once, with its kind. PutVersion and PutRevision
// claim the name in the transaction that records the deploy, a service
// also before its replicas start (ClaimServiceName); DeleteFunction and
// DeleteService free it. Topics and schedules have names of their own
// (/v1/topics/NAME, /v1/schedules/NAME) and are not in it.
//
// Two dialects. Open takes a file path (SQLite, the default: one server)
// or a postgres:// URL (PostgreSQL through pgx's database/sql driver:
// several servers share it). The queries are written once, with ?
// placeholders and SQL both dialects accept (INSERT ... ON CONFLICT, never
// INSERT OR ...; CASE, never the two-argument max or min; booleans as the
// integers 0 and 1; RETURNING, not the last rowid, where an ID is read
// back); on PostgreSQL the connector rebinds ? to $1, $2… and turns a bool
// argument into 0 or 1. The few statements that must differ are chosen by
// s.dialect: SQLite's INDEXED BY hints, and TailLogs' byte slicing.
//
// Migrations. Open applies the embedded migrations in one transaction,
// recording each in the schema_version table. migrations/NNNN_what.sql
// serves both dialects; migrations/sqlite/NNNN_what.sql and
// migrations/postgres/NNNN_what.sql serve one each, and a version has
// either one shared file or one per dialect, so that version numbers
// mean the same schema in both (and an existing SQLite data dir opens
// unchanged). On PostgreSQL the transaction first takes an advisory lock:
// servers starting at once migrate once.
//
// Connections and isolation. A SQLite file is in WAL mode and is reached
// through two connection pools: a single write connection, so writers
// queue in Go instead of failing with SQLITE_BUSY, and several read-only
// connections that read concurrently with it. Every write transaction
// (write) therefore runs as if alone. On PostgreSQL one pool serves reads
// and writes, and write runs each transaction at SERIALIZABLE, which
// keeps that promise: a transaction that could not have run alone fails
// with a serialization failure or a deadlock, and write runs it again (a
// bounded number of times, after a jittered pause). Reads run at
// PostgreSQL's default, READ COMMITTED, as single statements or read-only
// transactions. Many writes would be as correct at READ COMMITTED (the
// appends of records, log lines, usage, series and async states, and the
// upserts keyed by one row, which ON CONFLICT makes atomic); the ones that
// read before they write (a deploy's next version number and its name
// claim, PublishVersion's counter, the checks for an existing topic,
// alias or URL, leases) need SERIALIZABLE or explicit row locks. One
// level for all keeps every store method correct by the same argument
// as on SQLite, at the price of a retry now and then under contention.
// Log lines also take an advisory lock (InsertLogs) so that their IDs grow
// in commit order, as followers reading after an ID rely on. Service name
// claims left by a crash are dropped at Open on SQLite only: on
// PostgreSQL other servers may be deploying under theirs.
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
	"math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/stratus-run/stratus"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection (another process, or the write connection during a
// checkpoint) before giving up with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a Stratus database. Create it with Open and release it with
// Close.
type Store struct {
	w *sql.DB // writes: one connection on SQLite; the pool on PostgreSQL
	r *sql.DB // reads: read-only connections on SQLite; the pool on PostgreSQL

	dialect string // dialectSQLite or dialectPostgres
	pgDSN   string // the PostgreSQL URL as given; "" for SQLite

	now func() time.Time // the clock; tests replace it
}

// Open opens the database target names and brings its schema up to date:
// a postgres:// or postgresql:// URL is a PostgreSQL database (see
// openPostgres; a malformed URL is an error wrapping stratus.ErrInvalid);
// anything else is the path of a SQLite file, created if absent, readable
// by its owner only (see openSQLite).
func Open(ctx context.Context, target string) (*Store, error) {
	if isPostgresURL(target) {
		return openPostgres(ctx, target)
	}
	return openSQLite(ctx, target)
}

// Dialect is the SQL dialect of the database: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// openSQLite opens or creates the database file at path, configures it
// and brings its schema up to date. The file and its -wal and -shm files
// are the owner's only (0600); Open narrows a wider mode they were left
// with.
func openSQLite(ctx context.Context, path string) (*Store, error) {
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
	if err := migrate(ctx, w, dialectSQLite); err != nil {
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
	return &Store{w: w, r: r, dialect: dialectSQLite, now: time.Now}, nil
}

// openPostgres opens the PostgreSQL database at url through pgx and
// brings its schema up to date. Reads and writes share one pool: every
// connection may write, and PostgreSQL, not the pool, orders writers.
// Stale service name claims are not dropped here as on SQLite: other
// servers may be deploying with theirs.
func openPostgres(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w: %w", stratus.RedactURL(url), err, stratus.ErrInvalid)
	}
	db := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	n := 2 * max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)
	if err := migrate(ctx, db, dialectPostgres); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", stratus.RedactURL(url), classify(err))
	}
	return &Store{w: db, r: db, dialect: dialectPostgres, pgDSN: url, now: time.Now}, nil
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
	if s.dialect == dialectPostgres {
		return s.w.Close() // s.r is the same pool
	}
	// Let SQLite refresh its planner statistics while it still can;
	// failing to do so loses nothing.
	_, _ = s.w.Exec("PRAGMA optimize")
	return errors.Join(s.r.Close(), s.w.Close())
}

// Bounds of write's retries of a PostgreSQL transaction that failed to
// serialize.
const (
	maxWriteAttempts = 10
	retryBackoff     = 2 * time.Millisecond // doubled each time, with jitter
	maxRetryBackoff  = 100 * time.Millisecond
)

// write runs fn in a transaction and commits it if fn returns nil. Its
// errors are classified (see classify).
//
// On SQLite the transaction runs on the single write connection: writers
// queue and each sees every earlier commit. On PostgreSQL it runs at
// SERIALIZABLE, which gives the same outcome: a transaction that could
// not have run in some serial order fails with a serialization failure
// (or a deadlock), and write runs fn again, from the start, up to
// maxWriteAttempts times with a growing, jittered pause. fn may therefore
// run more than once and must not act outside tx but through variables
// it sets afresh on each run.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	var opts *sql.TxOptions
	if s.dialect == dialectPostgres {
		opts = &sql.TxOptions{Isolation: sql.LevelSerializable}
	}
	pause := retryBackoff
	for attempt := 1; ; attempt++ {
		err := s.writeOnce(ctx, opts, fn)
		if err == nil || attempt == maxWriteAttempts || !retryable(err) {
			return classify(err)
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return classify(err)
		case <-t.C:
		}
		pause = min(2*pause, maxRetryBackoff)
	}
}

func (s *Store) writeOnce(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// classify adds a kind to an error of the database that has one, the
// same in both dialects: stratus.ErrNoSpace when the disk is full (SQLite's
// SQLITE_FULL, which it also answers for ENOSPC while it writes the
// database, its journal or its WAL; PostgreSQL's disk_full), so that the
// edges answer 507 and readiness says why; stratus.ErrConflict for a
// unique or foreign key constraint that refused a write (the store checks
// what it can first, so this is a write that raced another).
func classify(err error) error {
	if err == nil || errors.Is(err, stratus.ErrNoSpace) || errors.Is(err, stratus.ErrConflict) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch {
		case se.Code()&0xff == sqlite3.SQLITE_FULL: // its primary code
			return fmt.Errorf("%w: %w", err, stratus.ErrNoSpace)
		case se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE,
			se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %w", err, stratus.ErrConflict)
		}
		return err
	}
	switch pgCode(err) {
	case pgDiskFull:
		return fmt.Errorf("%w: %w", err, stratus.ErrNoSpace)
	case pgUniqueViolation, pgForeignKeyViolation:
		return fmt.Errorf("%w: %w", err, stratus.ErrConflict)
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
// calls done(first, ids) after each statement with the IDs (the id
// column) of rows first..first+len(ids)-1, in the order of the rows,
// when done is not nil: on SQLite from the last rowid (one statement's
// rows get consecutive rowids), on PostgreSQL from RETURNING id (in
// ascending order: one statement takes its IDs in the order of its rows).
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, prefix string, cols, n int,
	add func(args []any, i int) []any, done func(first int, ids []int64)) error {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	returning := done != nil && s.dialect == dialectPostgres
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, cols*rowsPerInsert)
	ids := make([]int64, 0, rowsPerInsert)
	for first := 0; first < n; first += rowsPerInsert {
		count := min(rowsPerInsert, n-first)
		st := stmts[count]
		if st == nil {
			q := prefix + " VALUES " + strings.TrimSuffix(strings.Repeat(row+",", count), ",")
			if returning {
				q += " RETURNING id"
			}
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
		ids = ids[:0]
		switch {
		case returning:
			var err error
			if ids, err = queryIDs(ctx, st, ids, args); err != nil {
				return err
			}
			if len(ids) != count {
				return fmt.Errorf("insert of %d rows returned %d IDs", count, len(ids))
			}
			slices.Sort(ids)
		default:
			res, err := st.ExecContext(ctx, args...)
			if err != nil {
				return err
			}
			if done == nil {
				continue
			}
			last, err := res.LastInsertId()
			if err != nil {
				return err
			}
			for j := range count {
				ids = append(ids, last-int64(count-1-j))
			}
		}
		done(first, ids)
	}
	return nil
}

// queryIDs appends to ids the single integer column st's rows hold.
func queryIDs(ctx context.Context, st *sql.Stmt, ids []int64, args []any) ([]int64, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return ids, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
