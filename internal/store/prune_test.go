package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

// fill inserts n invocation records and n log lines for each of fns, one
// second apart from t0 on.
func fill(t *testing.T, s *Store, n int, fns ...string) {
	t.Helper()
	ctx := context.Background()
	var recs []stratus.Invocation
	var lines []stratus.LogLine
	for i := range n {
		for _, fn := range fns {
			at := t0.Add(time.Duration(i) * time.Second)
			recs = append(recs, invocation(fn, fmt.Sprint(i), at))
			lines = append(lines, logLine(fn, fmt.Sprint(i), at, fmt.Sprint(i)))
		}
	}
	if err := s.InsertInvocations(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
}

// kept returns the request IDs of fn's invocations, oldest first, and
// the texts of its log lines.
func kept(t *testing.T, s *Store, fn string) (inv, logs []string) {
	t.Helper()
	ctx := context.Background()
	recs, err := s.ListInvocations(ctx, fn, InvocationQuery{Limit: MaxInvocationLimit})
	if err != nil {
		t.Fatal(err)
	}
	inv = []string{}
	for i := len(recs) - 1; i >= 0; i-- {
		inv = append(inv, recs[i].RequestID)
	}
	lines, err := s.ListLogs(ctx, fn, LogQuery{Limit: MaxLogLimit})
	if err != nil {
		t.Fatal(err)
	}
	return inv, texts(lines)
}

func seq(from, to int) []string {
	s := []string{}
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprint(i))
	}
	return s
}

func TestPrune(t *testing.T) {
	for _, tc := range []struct {
		name          string
		maxInv, maxLn int
		maxAge        time.Duration
		wantInv       []string // of each function
		wantLogs      []string
	}{
		{"no bounds", 0, 0, 0, seq(0, 9), seq(0, 9)},
		{"counts", 3, 5, 0, seq(7, 9), seq(5, 9)},
		{"counts above the totals", 10, 20, 0, seq(0, 9), seq(0, 9)},
		{"invocations only", 1, 0, 0, seq(9, 9), seq(0, 9)},
		{"logs only", 0, 2, 0, seq(0, 9), seq(8, 9)},
		// The clock reads t0+20s: four seconds back is t0+6s, kept.
		{"age", 0, 0, 14 * time.Second, seq(6, 9), seq(6, 9)},
		{"age and counts", 2, 8, 14 * time.Second, seq(8, 9), seq(6, 9)},
		{"age older than everything", 0, 0, time.Hour, seq(0, 9), seq(0, 9)},
		{"age newer than everything", 0, 0, time.Second, seq(0, -1), seq(0, -1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t)
			s.now = func() time.Time { return t0.Add(20 * time.Second) }
			fns := []string{"a", "b", "c"}
			fill(t, s, 10, fns...)

			n, err := s.Prune(ctx, tc.maxInv, tc.maxLn, tc.maxAge)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(fns) * (20 - len(tc.wantInv) - len(tc.wantLogs))); n != want {
				t.Errorf("Prune deleted %d rows, want %d", n, want)
			}
			for _, fn := range fns {
				inv, logs := kept(t, s, fn)
				if diff := cmp.Diff(tc.wantInv, inv); diff != "" {
					t.Errorf("invocations of %s (-want +got):\n%s", fn, diff)
				}
				if diff := cmp.Diff(tc.wantLogs, logs); diff != "" {
					t.Errorf("logs of %s (-want +got):\n%s", fn, diff)
				}
			}

			// Pruning again finds nothing more to delete.
			if n, err := s.Prune(ctx, tc.maxInv, tc.maxLn, tc.maxAge); err != nil || n != 0 {
				t.Errorf("second Prune = %d, %v; want 0, nil", n, err)
			}
		})
	}
}

func TestPruneCountsPerFunction(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	fill(t, s, 10, "big")
	fill(t, s, 2, "small")
	if _, err := s.Prune(ctx, 4, 4, 0); err != nil {
		t.Fatal(err)
	}
	for fn, want := range map[string][]string{"big": seq(6, 9), "small": seq(0, 1)} {
		inv, logs := kept(t, s, fn)
		if diff := cmp.Diff(want, inv); diff != "" {
			t.Errorf("invocations of %s (-want +got):\n%s", fn, diff)
		}
		if diff := cmp.Diff(want, logs); diff != "" {
			t.Errorf("logs of %s (-want +got):\n%s", fn, diff)
		}
	}
}

func TestPruneInvocationsWithEqualStarts(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var recs []stratus.Invocation
	for i := range 6 {
		recs = append(recs, invocation("f", fmt.Sprint(i), t0)) // all at once
	}
	if err := s.InsertInvocations(ctx, recs); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, 4, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("Prune deleted %d, want 2", n)
	}
	inv, _ := kept(t, s, "f")
	if diff := cmp.Diff(seq(2, 5), inv); diff != "" {
		t.Errorf("invocations (-want +got):\n%s", diff)
	}
}

func TestPruneMany(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var fns []string
	for i := range 100 {
		fns = append(fns, fmt.Sprintf("fn-%03d", i))
	}
	fill(t, s, 30, fns...)
	begin := time.Now()
	n, err := s.Prune(ctx, 10, 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Prune of %d functions deleted %d rows in %v", len(fns), n, time.Since(begin))
	if want := int64(len(fns) * (20 + 10)); n != want {
		t.Errorf("Prune deleted %d rows, want %d", n, want)
	}
}

func TestPruneLogsByAgeStopsAtFirstNewLine(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	s.now = func() time.Time { return t0.Add(time.Hour) }
	lines := []stratus.LogLine{
		logLine("f", "r", t0, "old"),
		logLine("f", "r", t0.Add(time.Hour), "new"),
		logLine("f", "r", t0, "old, written late"),
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, 0, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	_, got := kept(t, s, "f")
	if diff := cmp.Diff([]string{"new", "old, written late"}, got); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}
