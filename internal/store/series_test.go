package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSeriesRows(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	row := func(step time.Duration, kind, name string, at time.Duration, data string) SeriesRow {
		return SeriesRow{Kind: kind, Name: name, Step: step, At: t0.Add(at), Data: []byte(data)}
	}
	samples := []SeriesRow{
		row(0, KindFunction, "b", 5*time.Second, "b5"),
		row(0, KindFunction, "a", 10*time.Second, "a10"),
		row(0, KindFunction, "a", 5*time.Second, "a5"),
		row(0, KindService, "a", 5*time.Second, "sa5"),
	}
	rollups := []SeriesRow{
		row(time.Minute, KindFunction, "a", 0, "m"), row(time.Minute, KindService, "a", 0, "ms"),
		row(time.Hour, KindFunction, "a", 0, "h"),
	}
	if err := s.PutSeries(ctx, samples, rollups); err != nil {
		t.Fatal(err)
	}
	// A period written again replaces the stored one.
	if err := s.PutSeries(ctx, nil, []SeriesRow{row(time.Minute, KindFunction, "a", 0, "m2")}); err != nil {
		t.Fatal(err)
	}
	byKey := cmpopts.SortSlices(func(a, b SeriesRow) bool {
		return a.Kind+a.Name+a.At.String() < b.Kind+b.Name+b.At.String()
	})
	for _, tc := range []struct {
		name string
		q    SeriesQuery
		want []SeriesRow
	}{
		{"all", SeriesQuery{}, samples},
		{"one kind", SeriesQuery{Kind: KindFunction}, samples[:3]},
		{"one workload", SeriesQuery{Kind: KindFunction, Name: "a"}, samples[1:3]},
		{"since", SeriesQuery{Kind: KindFunction, Name: "a", Since: t0.Add(10 * time.Second)}, samples[1:2]},
		{"until, inclusive", SeriesQuery{Until: t0.Add(5 * time.Second), Kind: KindFunction}, []SeriesRow{samples[0], samples[2]}},
	} {
		got, err := s.SeriesSamples(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got, byKey); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.name, diff)
		}
	}
	got, err := s.SeriesRollups(ctx, SeriesQuery{Step: time.Minute, Kind: KindFunction})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]SeriesRow{row(time.Minute, KindFunction, "a", 0, "m2")}, got); diff != "" {
		t.Errorf("rollups of a minute: (-want +got)\n%s", diff)
	}
	if got, _ := s.SeriesRollups(ctx, SeriesQuery{Step: time.Hour}); len(got) != 1 || string(got[0].Data) != "h" || got[0].Step != time.Hour {
		t.Errorf("rollups of an hour: %v", got)
	}

	// Pruning: samples before 10 s, then rollups step by step: each
	// step before its own time; a step not named, or a zero time, keeps.
	n, err := s.PruneSeries(ctx, t0.Add(10*time.Second), nil)
	if err != nil || n != 3 {
		t.Fatalf("PruneSeries: %d, %v; want 3 rows", n, err)
	}
	if got, _ := s.SeriesSamples(ctx, SeriesQuery{}); len(got) != 1 || !got[0].At.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("after pruning: %v", got)
	}
	if n, err := s.PruneSeries(ctx, time.Time{}, map[time.Duration]time.Time{time.Minute: t0.Add(time.Second), time.Hour: {}}); err != nil || n != 2 {
		t.Fatalf("PruneSeries of minutes: %d, %v; want 2 rows", n, err)
	}
	if got, _ := s.SeriesRollups(ctx, SeriesQuery{Step: time.Hour}); len(got) != 1 {
		t.Fatalf("pruning minutes took the hour: %v", got)
	}
	if n, err := s.PruneSeries(ctx, time.Time{}, map[time.Duration]time.Time{time.Minute: t0.Add(time.Hour), time.Hour: t0}); err != nil || n != 0 {
		t.Fatalf("PruneSeries of an hour that began at its time: %d, %v; want none", n, err)
	}
	if n, err := s.PruneSeries(ctx, time.Time{}, map[time.Duration]time.Time{time.Hour: t0.Add(time.Second)}); err != nil || n != 1 {
		t.Fatalf("PruneSeries of hours: %d, %v; want 1 row", n, err)
	}
}

// TestPruneSeriesInBatches: more rows than one transaction deletes go in
// several.
func TestPruneSeriesInBatches(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var samples, rollups []SeriesRow
	for i := range pruneUsageRows + 10 {
		at := t0.Add(time.Duration(i) * time.Second)
		samples = append(samples, SeriesRow{Kind: KindFunction, Name: "fn", At: at, Data: []byte{1}})
		rollups = append(rollups, SeriesRow{Kind: KindFunction, Name: "fn", Step: time.Minute, At: at, Data: []byte{1}})
	}
	if err := s.PutSeries(ctx, samples, rollups); err != nil {
		t.Fatal(err)
	}
	end := t0.Add(2 * time.Hour)
	if n, err := s.PruneSeries(ctx, end, map[time.Duration]time.Time{time.Minute: end}); err != nil || n != 2*int64(pruneUsageRows+10) {
		t.Fatalf("PruneSeries: %d, %v", n, err)
	}
	if left, _ := s.SeriesSamples(ctx, SeriesQuery{}); len(left) != 0 {
		t.Fatalf("%d samples left", len(left))
	}
}
