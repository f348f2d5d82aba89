package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The dialects a Store speaks (Dialect).
const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"
)

// isPostgresURL reports whether target names a PostgreSQL database
// rather than a SQLite file.
func isPostgresURL(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// rebind rewrites the ? placeholders of query as PostgreSQL's $1, $2…,
// leaving alone those in string literals ('…', quotes doubled), quoted
// identifiers ("…"), dollar-quoted bodies ($tag$…$tag$) and comments (--
// and unnested /* */). It does not know E'…' backslash escapes, nested
// comments or jsonb's ? operator: the store's queries use none of them
// (values always travel as parameters).
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i++
			continue
		case c == '\'' || c == '"':
			j := skipQuoted(query, i, c)
			b.WriteString(query[i:j])
			i = j
			continue
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j
			continue
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			j := strings.Index(query[i+2:], "*/")
			end := len(query)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(query[i:end])
			i = end
			continue
		case c == '$':
			if tag, ok := dollarTag(query[i:]); ok {
				end := strings.Index(query[i+len(tag):], tag)
				stop := len(query)
				if end >= 0 {
					stop = i + len(tag) + end + len(tag)
				}
				b.WriteString(query[i:stop])
				i = stop
				continue
			}
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

// skipQuoted returns the index just past the quoted run that starts at
// query[i] with quote q; a doubled quote stands for itself.
func skipQuoted(query string, i int, q byte) int {
	for j := i + 1; j < len(query); j++ {
		if query[j] != q {
			continue
		}
		if j+1 < len(query) && query[j+1] == q {
			j++
			continue
		}
		return j + 1
	}
	return len(query)
}

// dollarTag returns the tag ($$ or $name$) s starts with, if it starts a
// dollar-quoted string.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 1 && c >= '0' && c <= '9':
		default:
			return "", false
		}
	}
	return "", false
}

// pgConnector opens connections of pgx's database/sql driver that take
// the store's queries as SQLite does: ? placeholders (rebind), and
// booleans as the integers 0 and 1.
type pgConnector struct{ driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := conn.(pgDriverConn)
	if !ok {
		conn.Close()
		return nil, errors.New("pgx connection lacks a database/sql method")
	}
	return pgConn{pc}, nil
}

// pgDriverConn is what pgx's stdlib.Conn implements and pgConn passes
// on.
type pgDriverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.NamedValueChecker
}

type pgConn struct{ c pgDriverConn }

func (c pgConn) Prepare(query string) (driver.Stmt, error) { return c.c.Prepare(rebind(query)) }
func (c pgConn) Close() error                              { return c.c.Close() }
func (c pgConn) Ping(ctx context.Context) error            { return c.c.Ping(ctx) }
func (c pgConn) ResetSession(ctx context.Context) error    { return c.c.ResetSession(ctx) }

func (c pgConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.c.BeginTx(ctx, opts)
}

func (c pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.c.PrepareContext(ctx, rebind(query))
}

// ExecContext rebinds query unless it has no arguments: a statement
// without arguments (a migration's script) goes as it is, through the
// simple protocol, and may hold several statements.
func (c pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) > 0 {
		query = rebind(query)
	}
	return c.c.ExecContext(ctx, query, args)
}

func (c pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) > 0 {
		query = rebind(query)
	}
	return c.c.QueryContext(ctx, query, args)
}

// CheckNamedValue stores a bool as SQLite does, as 0 or 1: the schema's
// flags are integer columns in both dialects.
func (c pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		nv.Value = int64(0)
		if b {
			nv.Value = int64(1)
		}
		return nil
	}
	return c.c.CheckNamedValue(nv)
}

// Keys of the PostgreSQL advisory locks the store takes, each for the
// length of a transaction (pg_advisory_xact_lock).
const (
	migrateLockKey int64 = 0x53747261747573_01 // migrate: one server applies the migrations
	logsLockKey    int64 = 0x53747261747573_02 // InsertLogs: log IDs grow in commit order
)

// PostgreSQL's error codes (SQLSTATE) the store acts on.
const (
	pgDiskFull             = "53100" // disk_full
	pgSerializationFailure = "40001" // serialization_failure
	pgDeadlock             = "40P01" // deadlock_detected
	pgUniqueViolation      = "23505" // unique_violation
	pgForeignKeyViolation  = "23503" // foreign_key_violation
)

// pgCode is the SQLSTATE of a PostgreSQL error err wraps, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// retryable reports whether a transaction that failed with err may
// succeed when run again: PostgreSQL aborted it to keep transactions
// serializable, or to break a deadlock.
func retryable(err error) bool {
	switch pgCode(err) {
	case pgSerializationFailure, pgDeadlock:
		return true
	}
	return false
}
