package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func requestIDs(recs []stratus.Invocation) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.RequestID
	}
	return ids
}

func TestListInvocations(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	// Inserted out of order, across two batches and two functions; r2 and
	// r2b start at the same instant.
	if err := s.InsertInvocations(ctx, []stratus.Invocation{
		invocation("f", "r3", t0.Add(3*time.Second)),
		invocation("f", "r1", t0.Add(1*time.Second)),
		invocation("g", "r1", t0.Add(5*time.Second)),
		invocation("f", "r2", t0.Add(2*time.Second)),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertInvocations(ctx, []stratus.Invocation{
		invocation("f", "r2b", t0.Add(2*time.Second)),
		invocation("f", "r1", t0.Add(4*time.Second)), // a retry of r1
	}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		fn   string
		q    InvocationQuery
		want []string
	}{
		{"all, newest first", "f", InvocationQuery{}, []string{"r1", "r3", "r2b", "r2", "r1"}},
		{"other function", "g", InvocationQuery{}, []string{"r1"}},
		{"unknown function", "h", InvocationQuery{}, []string{}},
		{"request id", "f", InvocationQuery{RequestID: "r1"}, []string{"r1", "r1"}},
		{"request id of another function", "g", InvocationQuery{RequestID: "r2"}, []string{}},
		{"since is inclusive", "f", InvocationQuery{Since: t0.Add(2 * time.Second)}, []string{"r1", "r3", "r2b", "r2"}},
		{"since and request id", "f", InvocationQuery{Since: t0.Add(2 * time.Second), RequestID: "r1"}, []string{"r1"}},
		{"limit", "f", InvocationQuery{Limit: 2}, []string{"r1", "r3"}},
		{"limit and since", "f", InvocationQuery{Limit: 3, Since: t0.Add(3 * time.Second)}, []string{"r1", "r3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListInvocations(ctx, tc.fn, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, requestIDs(got)); diff != "" {
				t.Errorf("request IDs (-want +got):\n%s", diff)
			}
		})
	}

	// Every field reads back.
	got, err := s.ListInvocations(ctx, "f", InvocationQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []stratus.Invocation{invocation("f", "r1", t0.Add(4*time.Second))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if loc := got[0].Start.Location(); loc != time.UTC {
		t.Errorf("Start is in %v, want UTC", loc)
	}
}

func TestInvocationZeroFields(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	rec := stratus.Invocation{Function: "f", RequestID: "r", Outcome: stratus.OutcomeSuccess}
	if err := s.InsertInvocations(ctx, []stratus.Invocation{rec}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListInvocations(ctx, "f", InvocationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.Invocation{rec}, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
}

func TestLimit(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{0, 100}, {-1, 100}, {1, 1}, {7, 7}, {1000, 1000}, {1001, 1000}, {1 << 40, 1000},
	} {
		if got := limit(tc.n, 100, 1000); got != tc.want {
			t.Errorf("limit(%d, 100, 1000) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func TestListInvocationsLimits(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	recs := make([]stratus.Invocation, DefaultInvocationLimit+5)
	for i := range recs {
		recs[i] = invocation("f", fmt.Sprintf("r%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if err := s.InsertInvocations(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want int }{
		{0, DefaultInvocationLimit},
		{-1, DefaultInvocationLimit},
		{7, 7},
		{MaxInvocationLimit + 1, len(recs)},
	} {
		got, err := s.ListInvocations(ctx, "f", InvocationQuery{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("Limit %d: %d records, want %d", tc.limit, len(got), tc.want)
		}
		if newest := fmt.Sprintf("r%d", len(recs)-1); got[0].RequestID != newest {
			t.Errorf("Limit %d: first record %s, want the newest, %s", tc.limit, got[0].RequestID, newest)
		}
	}
}

func TestInsertInvocationsIsAtomic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := openTest(t)
	cancel()
	if err := s.InsertInvocations(ctx, []stratus.Invocation{invocation("f", "r", t0)}); err == nil {
		t.Fatal("InsertInvocations with a cancelled context succeeded")
	}
	got, err := s.ListInvocations(context.Background(), "f", InvocationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("a failed insert left %d records", len(got))
	}
	if err := s.InsertInvocations(context.Background(), nil); err != nil {
		t.Errorf("InsertInvocations(nil): %v", err)
	}
}

func BenchmarkInsertInvocations(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	const batch = 1000
	recs := make([]stratus.Invocation, batch)
	for i := range recs {
		recs[i] = invocation(fmt.Sprintf("fn-%d", i%10), fmt.Sprintf("req-%d", i), t0.Add(time.Duration(i)))
	}
	for b.Loop() {
		if err := s.InsertInvocations(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}
