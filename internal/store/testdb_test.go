package store

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/clustertest"
)

// One suite, two drivers: TestMain runs the tests on SQLite, then runs
// this test binary again, with the same flags, on PostgreSQL: the
// environment variable pgTestEnv gives the child the URL of a server
// TestMain started (clustertest.NewPostgres), and openTest opens each
// test's store in a database of its own there. Without PostgreSQL's
// binaries the second run is skipped, and fails under CI=true.

// pgTestEnv holds, in the PostgreSQL run, the URL of the server's
// postgres database.
const pgTestEnv = "STRATUS_STORE_TEST_POSTGRES"

// testPG is the server of the PostgreSQL run; nil in the SQLite run.
var testPG *clustertest.Postgres

// testTemplate is the database of the PostgreSQL run that openTest's
// databases copy: every migration applied, nothing stored.
var testTemplate string

// migratedTemplate creates a database on pg and migrates it.
func migratedTemplate(pg *clustertest.Postgres) (string, error) {
	ctx := context.Background()
	name, err := pg.NewDB(ctx, "")
	if err != nil {
		return "", err
	}
	s, err := Open(ctx, pg.URL(name))
	if err != nil {
		return "", err
	}
	return name, s.Close()
}

func TestMain(m *testing.M) { os.Exit(runBoth(m)) }

func runBoth(m *testing.M) int {
	if url := os.Getenv(pgTestEnv); url != "" {
		pg, err := clustertest.PostgresAt(url)
		if err != nil {
			fmt.Fprintf(os.Stderr, "store tests on postgres: %v\n", err)
			return 1
		}
		testPG = pg
		// Each test's database is a copy of one migrated once
		// (openTest); the tests of migrations start from empty ones.
		if testTemplate, err = migratedTemplate(pg); err != nil {
			fmt.Fprintf(os.Stderr, "store tests on postgres: %v\n", err)
			return 1
		}
		defer pg.DropDB(context.Background(), testTemplate)
		return m.Run()
	}
	began := time.Now()
	code := m.Run()
	fmt.Fprintf(os.Stderr, "store tests on sqlite: %s\n", time.Since(began).Round(time.Millisecond))
	for _, name := range []string{"test.list", "test.fuzz"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return code // listing or fuzzing: once is enough
		}
	}

	began = time.Now()
	pg, err := clustertest.NewPostgres(context.Background())
	if errors.Is(err, clustertest.ErrNoPostgres) && os.Getenv("CI") != "true" {
		fmt.Fprintf(os.Stderr, "store tests on postgres skipped: %v\n", err)
		return code
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "store tests on postgres: %v\n", err)
		return 1
	}
	defer pg.Close()
	started := time.Since(began)
	began = time.Now()
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), pgTestEnv+"="+pg.URL("postgres"))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "store tests on postgres: %v\n", err)
		code = max(code, 1)
	}
	fmt.Fprintf(os.Stderr, "store tests on postgres: %s (and %s to start the server)\n",
		time.Since(began).Round(time.Millisecond), started.Round(time.Millisecond))
	return code
}

// targets holds the target (file path or URL) each test store was opened
// at, for reopen.
var targets sync.Map // *Store -> string

// openTest opens a fresh store of the run's driver, with a test clock,
// closed when the test ends: a file in a new directory on SQLite, a new
// database on PostgreSQL.
func openTest(t testing.TB) *Store {
	t.Helper()
	if testPG != nil {
		return openAt(t, testPG.CreateDBFrom(t, testTemplate))
	}
	return openAt(t, filepath.Join(t.TempDir(), "stratus.db"))
}

// emptyTarget is a new empty database of the run's driver: a file path,
// or a URL.
func emptyTarget(t testing.TB) string {
	t.Helper()
	if testPG != nil {
		return testPG.CreateDB(t)
	}
	return filepath.Join(t.TempDir(), "stratus.db")
}

// openFile opens a store in a new SQLite file, for the tests about the
// file itself, and returns its path. The PostgreSQL run skips them (why
// says why).
func openFile(t testing.TB, why string) (*Store, string) {
	t.Helper()
	sqliteOnly(t, why)
	path := filepath.Join(t.TempDir(), "stratus.db")
	return openAt(t, path), path
}

// sqliteOnly skips t in the PostgreSQL run: what it tests is SQLite's
// (why says what). This is no missing dependency: CI skips it too.
func sqliteOnly(t testing.TB, why string) {
	t.Helper()
	if testPG != nil {
		t.Skipf("SQLite only: %s", why)
	}
}

// postgresOnly skips t in the SQLite run: it runs in the PostgreSQL run
// of the same binary (which TestMain makes, and fails under CI=true when
// PostgreSQL is missing), so no run under CI leaves it out.
func postgresOnly(t testing.TB, why string) {
	t.Helper()
	if testPG == nil {
		t.Skipf("PostgreSQL only: %s", why)
	}
}

// openAt opens the store at target (a file path or a URL) with a test
// clock, closed when the test ends.
func openAt(t testing.TB, target string) *Store {
	t.Helper()
	s, err := Open(context.Background(), target)
	if err != nil {
		t.Fatalf("Open(%q): %v", target, err)
	}
	s.now = newClock().Now
	targets.Store(s, target)
	t.Cleanup(func() {
		if err := s.Close(); err != nil { // Close is idempotent
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// reopen closes s and opens its database again, as a restart would.
func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	target, ok := targets.Load(s)
	if !ok {
		t.Fatal("reopen: a store openAt did not open")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openAt(t, target.(string))
}

// target is where s was opened: its file's path, or its URL.
func target(t testing.TB, s *Store) string {
	t.Helper()
	target, ok := targets.Load(s)
	if !ok {
		t.Fatal("a store openAt did not open")
	}
	return target.(string)
}
