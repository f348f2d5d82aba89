package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func texts(lines []stratus.LogLine) []string {
	ts := make([]string, len(lines))
	for i, l := range lines {
		ts[i] = l.Text
	}
	return ts
}

func TestInsertLogsAssignsIDs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	lines := []stratus.LogLine{
		logLine("f", "r1", t0, "a"),
		logLine("g", "r1", t0, "b"),
		logLine("f", "r1", t0, "c"),
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		if l.ID <= 0 || i > 0 && l.ID <= lines[i-1].ID {
			t.Errorf("line %d has ID %d after %d; want increasing positive IDs", i, l.ID, lines[max(i-1, 0)].ID)
		}
	}
	got, err := s.ListLogs(ctx, "f", LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.LogLine{lines[0], lines[2]}, got); diff != "" {
		t.Errorf("ListLogs (-want +got):\n%s", diff)
	}

	// IDs are not reused when the newest lines are deleted.
	if _, err := s.PutVersion(ctx, "f", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	more := []stratus.LogLine{logLine("f", "r2", t0, "d")}
	if err := s.InsertLogs(ctx, more); err != nil {
		t.Fatal(err)
	}
	if more[0].ID <= lines[2].ID {
		t.Errorf("ID after deleting the newest line = %d, want more than %d", more[0].ID, lines[2].ID)
	}
}

func TestListLogs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var lines []stratus.LogLine
	for i := range 10 {
		fn := "f"
		if i%5 == 4 {
			fn = "g"
		}
		lines = append(lines, logLine(fn, fmt.Sprintf("r%d", i/3), t0.Add(time.Duration(i)*time.Second), fmt.Sprint(i)))
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	// f has lines 0 1 2 3 5 6 7 8 with requests r0 r0 r0 r1 r1 r2 r2 r2.
	for _, tc := range []struct {
		name string
		fn   string
		q    LogQuery
		want []string
	}{
		{"all, oldest first", "f", LogQuery{}, []string{"0", "1", "2", "3", "5", "6", "7", "8"}},
		{"other function", "g", LogQuery{}, []string{"4", "9"}},
		{"unknown function", "h", LogQuery{}, []string{}},
		{"request id", "f", LogQuery{RequestID: "r1"}, []string{"3", "5"}},
		{"since is inclusive", "f", LogQuery{Since: t0.Add(6 * time.Second)}, []string{"6", "7", "8"}},
		{"after id", "f", LogQuery{AfterID: lines[5].ID}, []string{"6", "7", "8"}},
		{"after the last id", "f", LogQuery{AfterID: lines[9].ID}, []string{}},
		{"limit keeps the oldest", "f", LogQuery{Limit: 3}, []string{"0", "1", "2"}},
		{"after id and limit", "f", LogQuery{AfterID: lines[1].ID, Limit: 2}, []string{"2", "3"}},
		{"request id and since", "f", LogQuery{RequestID: "r2", Since: t0.Add(7 * time.Second)}, []string{"7", "8"}},
		{"everything", "f", LogQuery{RequestID: "r2", Since: t0.Add(6 * time.Second), AfterID: lines[6].ID, Limit: 1}, []string{"7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListLogs(ctx, tc.fn, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, texts(got)); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListLogsLimits(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	lines := make([]stratus.LogLine, DefaultLogLimit+5)
	for i := range lines {
		lines[i] = logLine("f", "r", t0, fmt.Sprint(i))
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want int }{
		{0, DefaultLogLimit},
		{-3, DefaultLogLimit},
		{5, 5},
		{MaxLogLimit + 1, len(lines)},
	} {
		got, err := s.ListLogs(ctx, "f", LogQuery{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("Limit %d: %d lines, want %d", tc.limit, len(got), tc.want)
		}
		if got[0].Text != "0" {
			t.Errorf("Limit %d: first line %q, want the oldest", tc.limit, got[0].Text)
		}
	}
}

func TestInsertLogsFailureAssignsNoIDs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := openTest(t)
	cancel()
	lines := []stratus.LogLine{logLine("f", "r", t0, "x")}
	if err := s.InsertLogs(ctx, lines); err == nil {
		t.Fatal("InsertLogs with a cancelled context succeeded")
	}
	if lines[0].ID != 0 {
		t.Errorf("a failed insert set ID %d", lines[0].ID)
	}
}

func BenchmarkInsertLogs(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	const batch = 1000
	lines := make([]stratus.LogLine, batch)
	for i := range lines {
		lines[i] = logLine(fmt.Sprintf("fn-%d", i%10), fmt.Sprintf("req-%d", i/10), t0, "a line of output of typical length, say sixty bytes")
	}
	for b.Loop() {
		if err := s.InsertLogs(ctx, lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "lines/s")
}
