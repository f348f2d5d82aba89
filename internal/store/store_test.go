package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

// clock is a test clock that moves one second forward each time it is
// read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func testConfig(memory int) stratus.FunctionConfig {
	c := stratus.FunctionConfig{Runtime: stratus.RuntimePython3, Handler: "app.handler", MemoryMB: memory}
	c.Defaults()
	return c
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	var lens []int
	for _, d := range []string{dialectSQLite, dialectPostgres} {
		ms, err := migrations(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Fatalf("no %s migrations embedded", d)
		}
		for i, m := range ms {
			if m.version != i+1 {
				t.Errorf("%s migration %s has version %d, want %d", d, m.name, m.version, i+1)
			}
		}
		lens = append(lens, len(ms))
	}
	if lens[0] != lens[1] {
		t.Errorf("%d SQLite migrations, %d PostgreSQL ones", lens[0], lens[1])
	}
}

func TestOpenMigratesOnce(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	s = reopen(t, s) // applies nothing the second time
	ms, _ := migrations(s.Dialect())
	var n, v int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || v != len(ms) {
		t.Errorf("schema_version has %d rows up to version %d, want %d up to %d", n, v, len(ms), len(ms))
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	path := target(t, s)
	if _, err := s.w.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (1000, 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path)
	if err == nil {
		s2.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
	if !strings.Contains(err.Error(), "schema version 1000") {
		t.Errorf("Open: %v, want a schema version error", err)
	}
}

func TestPragmas(t *testing.T) {
	ctx := context.Background()
	s, _ := openFile(t, "SQLite's pragmas")
	pragma := func(db *sql.DB, name string) string {
		t.Helper()
		var v string
		if err := db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v); err != nil {
			t.Fatalf("PRAGMA %s: %v", name, err)
		}
		return v
	}
	for _, tc := range []struct {
		db   *sql.DB
		name string
		want string
	}{
		{s.w, "journal_mode", "wal"},
		{s.w, "foreign_keys", "1"},
		{s.w, "synchronous", "1"}, // NORMAL
		{s.w, "busy_timeout", "10000"},
		{s.w, "query_only", "0"},
		{s.r, "journal_mode", "wal"},
		{s.r, "foreign_keys", "1"},
		{s.r, "busy_timeout", "10000"},
		{s.r, "query_only", "1"},
	} {
		which := "write"
		if tc.db == s.r {
			which = "read"
		}
		if got := pragma(tc.db, tc.name); got != tc.want {
			t.Errorf("%s pool: PRAGMA %s = %s, want %s", which, tc.name, got, tc.want)
		}
	}
	if _, err := s.r.ExecContext(ctx, `DELETE FROM functions`); err == nil {
		t.Error("a write through the read pool succeeded")
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	sqliteOnly(t, "the path of a SQLite file")
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	path := filepath.Join(dir, "db?.sqlite")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, path)
	if _, err := s.PutVersion(ctx, "f", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database is not at %q: %v", path, err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	cfg := testConfig(256)
	cfg.Env = map[string]string{"A": "1"}
	cfg.IdleTimeout = stratus.Duration(time.Minute)
	if _, err := s.PutVersion(ctx, "alpha", testConfig(128), "sha1", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutVersion(ctx, "alpha", cfg, "sha2", 20); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutVersion(ctx, "beta", cfg, "sha3", 30); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	recs := []stratus.Invocation{
		invocation("alpha", "r1", start),
		invocation("beta", "r2", start.Add(time.Millisecond)),
	}
	if err := s.InsertInvocations(ctx, recs); err != nil {
		t.Fatal(err)
	}
	lines := []stratus.LogLine{
		logLine("alpha", "r1", start, "hello"),
		logLine("beta", "r2", start, "world"),
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}

	type state struct {
		Functions   []stratus.Function
		V1          *stratus.Version
		Invocations []stratus.Invocation
		Logs        []stratus.LogLine
		Code        map[string]bool
	}
	read := func(s *Store) state {
		t.Helper()
		var st state
		var err error
		if st.Functions, err = s.ListFunctions(ctx); err != nil {
			t.Fatal(err)
		}
		if st.V1, err = s.GetVersion(ctx, "alpha", 1); err != nil {
			t.Fatal(err)
		}
		for _, fn := range []string{"alpha", "beta"} {
			inv, err := s.ListInvocations(ctx, fn, InvocationQuery{})
			if err != nil {
				t.Fatal(err)
			}
			st.Invocations = append(st.Invocations, inv...)
			ls, err := s.ListLogs(ctx, fn, LogQuery{})
			if err != nil {
				t.Fatal(err)
			}
			st.Logs = append(st.Logs, ls...)
		}
		if st.Code, err = s.CodeInUse(ctx); err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := read(s)
	if diff := cmp.Diff(recs, before.Invocations); diff != "" {
		t.Errorf("invocations (-inserted +read):\n%s", diff)
	}
	if diff := cmp.Diff(lines, before.Logs); diff != "" {
		t.Errorf("logs (-inserted +read):\n%s", diff)
	}
	s = reopen(t, s)
	if diff := cmp.Diff(before, read(s)); diff != "" {
		t.Errorf("after reopening (-before +after):\n%s", diff)
	}
	// Log IDs carry on from where they were.
	more := []stratus.LogLine{logLine("alpha", "r3", start, "again")}
	if err := s.InsertLogs(ctx, more); err != nil {
		t.Fatal(err)
	}
	if more[0].ID <= lines[1].ID {
		t.Errorf("log ID after reopening = %d, want more than %d", more[0].ID, lines[1].ID)
	}
	// Versions carry on too.
	f, err := s.PutVersion(ctx, "alpha", cfg, "sha4", 40)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 {
		t.Errorf("version after reopening = %d, want 3", f.Version)
	}
}

func TestNanosRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 1).UTC(),
		time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC),
		time.Date(2025, 3, 4, 5, 6, 7, 8, time.FixedZone("X", 3600)),
	} {
		got := fromNanos(nanos(tm))
		if !got.Equal(tm) {
			t.Errorf("fromNanos(nanos(%v)) = %v", tm, got)
		}
		if !tm.IsZero() && got.Location() != time.UTC {
			t.Errorf("fromNanos(nanos(%v)) is in %v, want UTC", tm, got.Location())
		}
	}
}
