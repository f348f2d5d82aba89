package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// TestFullDatabaseIsNoSpace: SQLite's "database or disk is full"
// (SQLITE_FULL) is stratus.ErrNoSpace, and writes work again once there is
// room. The database is capped with max_page_count, which fails writes as
// a full disk does.
func TestFullDatabaseIsNoSpace(t *testing.T) {
	s, _ := openFile(t, "a full SQLite file; PostgreSQL's disk_full is TestClassify's")
	ctx := t.Context()
	var pages int
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages+2)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	lines := make([]stratus.LogLine, 500)
	for i := range lines {
		lines[i] = logLine("f", "r", now, strings.Repeat("x", 200))
	}
	err := s.InsertLogs(ctx, lines)
	if !errors.Is(err, stratus.ErrNoSpace) {
		t.Fatalf("insert into a full database = %v, want ErrNoSpace", err)
	}
	if !strings.Contains(err.Error(), "database or disk is full") {
		t.Errorf("error %q does not say what SQLite said", err)
	}
	if _, err := s.w.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatalf("insert once there is room: %v", err)
	}
}
