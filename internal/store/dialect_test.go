package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/stratus-run/stratus"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT ? FROM t WHERE a = ? AND b IN (?, ?)`, `SELECT $1 FROM t WHERE a = $2 AND b IN ($3, $4)`},
		{`SELECT '?', "?" FROM t WHERE a = ?`, `SELECT '?', "?" FROM t WHERE a = $1`},
		{`SELECT 'it''s ?' || ?`, `SELECT 'it''s ?' || $1`},
		{`SELECT "a""?" FROM t WHERE x = ?`, `SELECT "a""?" FROM t WHERE x = $1`},
		{"SELECT ? -- a comment?\nFROM t WHERE a = ?", "SELECT $1 -- a comment?\nFROM t WHERE a = $2"},
		{`SELECT ? /* what? */ , ?`, `SELECT $1 /* what? */ , $2`},
		{`SELECT $$ ? $$, $tag$ ?$ $tag$, ?`, `SELECT $$ ? $$, $tag$ ?$ $tag$, $1`},
		{`SELECT $1, ?`, `SELECT $1, $1`}, // mixing styles is the caller's mistake
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
		{`SELECT ? -- to the end?`, `SELECT $1 -- to the end?`},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzRebind: rebind never panics and, in a query without $, changes
// nothing but placeholders, which it numbers 1, 2, 3… in order.
func FuzzRebind(f *testing.F) {
	for _, s := range []string{`SELECT ? FROM t WHERE a = '?' AND b = ?`, "-- ?\n?", `$$?$$?`, `"?"?`, `/* ? */?`, `$a$ ? $a`, `'`, `$`, `?`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := rebind(q)
		if strings.Contains(q, "$") {
			return
		}
		n, j := 0, 0
		for i := 0; i < len(q); i++ {
			if want := fmt.Sprintf("$%d", n+1); q[i] == '?' && strings.HasPrefix(got[j:], want) {
				n++
				j += len(want)
				continue
			}
			if j >= len(got) || got[j] != q[i] {
				t.Fatalf("rebind(%q) = %q: changed more than placeholders", q, got)
			}
			j++
		}
		if j != len(got) {
			t.Fatalf("rebind(%q) = %q: added to the end", q, got)
		}
	})
}

func TestClassify(t *testing.T) {
	plain := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"plain", plain, nil},
		{"postgres disk full", &pgconn.PgError{Code: pgDiskFull}, stratus.ErrNoSpace},
		{"postgres unique", fmt.Errorf("insert: %w", &pgconn.PgError{Code: pgUniqueViolation}), stratus.ErrConflict},
		{"postgres foreign key", &pgconn.PgError{Code: pgForeignKeyViolation}, stratus.ErrConflict},
		{"postgres other", &pgconn.PgError{Code: "42601"}, nil},
	} {
		got := classify(tc.err)
		if tc.want == nil {
			if got != tc.err {
				t.Errorf("%s: classify(%v) = %v, want it unchanged", tc.name, tc.err, got)
			}
			continue
		}
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("%s: classify(%v) = %v, want it wrapping %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// A write that breaks a constraint is a conflict in both dialects.
func TestConstraintIsConflict(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	insert := func() error {
		return s.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO topics (name, created_at) VALUES (?, ?)`, "t", 1)
			return err
		})
	}
	if err := insert(); err != nil {
		t.Fatal(err)
	}
	if err := insert(); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("a second row of one key: %v, want ErrConflict", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (id, topic, function, url, filter, batch, created_at)
			VALUES ('s', 'none', 'f', '', '', 1, 1)`)
		return err
	})
	if !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("a row referring to none: %v, want ErrConflict", err)
	}
	if s.Dialect() == dialectSQLite {
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
			t.Errorf("SQLite's error: %v", err)
		}
	}
}

// write runs a transaction that failed to serialize again, a bounded
// number of times, and nothing else.
func TestWriteRetries(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name      string
		failures  int
		err       error
		wantRuns  int
		wantError bool
	}{
		{"serialization failure once", 1, &pgconn.PgError{Code: pgSerializationFailure}, 2, false},
		{"deadlock twice", 2, &pgconn.PgError{Code: pgDeadlock}, 3, false},
		{"always failing", 1000, &pgconn.PgError{Code: pgSerializationFailure}, maxWriteAttempts, true},
		{"another error", 1000, &pgconn.PgError{Code: "42601"}, 1, true},
	} {
		runs := 0
		err := s.write(ctx, func(tx *sql.Tx) error {
			runs++
			if runs <= tc.failures {
				return tc.err
			}
			return nil
		})
		if runs != tc.wantRuns || (err != nil) != tc.wantError {
			t.Errorf("%s: %d runs, %v; want %d runs, error %t", tc.name, runs, err, tc.wantRuns, tc.wantError)
		}
	}
}

// Servers that start at once on one new database migrate it once: each
// Open succeeds and the schema has each version once.
func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	target := emptyTarget(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), target) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		defer s.Close()
	}
	if t.Failed() {
		return
	}
	ms, _ := migrations(stores[0].Dialect())
	var rows, v int
	if err := stores[0].r.QueryRowContext(t.Context(), `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&rows, &v); err != nil {
		t.Fatal(err)
	}
	if rows != len(ms) || v != len(ms) {
		t.Errorf("schema_version has %d rows up to %d, want %d", rows, v, len(ms))
	}
}
