package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func TestSchedules(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	created := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	nightly := stratus.Schedule{Name: "nightly", Function: "report", Expression: "cron(0 2 * * ? *)",
		Timezone: "Europe/Berlin", Data: json.RawMessage(`{"kind":"full"}`), CreatedAt: created}
	every := stratus.Schedule{Name: "every", Function: "tick", Expression: "rate(5 minutes)", CreatedAt: created.Add(time.Hour)}
	for _, sc := range []stratus.Schedule{nightly, every} {
		if err := s.CreateSchedule(ctx, sc); err != nil {
			t.Fatalf("CreateSchedule(%s): %v", sc.Name, err)
		}
	}

	dup := every
	dup.Function = "other"
	if err := s.CreateSchedule(ctx, dup); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("CreateSchedule of an existing name: %v, want ErrConflict", err)
	}

	list, err := s.ListSchedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.Schedule{every, nightly}, list); diff != "" {
		t.Errorf("ListSchedules (-want +got):\n%s", diff)
	}

	fired := created.Add(2 * time.Hour)
	if err := s.SetLastFired(ctx, "every", fired); err != nil {
		t.Fatal(err)
	}
	// An earlier firing recorded late (by another server) changes nothing.
	if err := s.SetLastFired(ctx, "every", fired.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLastFired(ctx, "nope", fired); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("SetLastFired of a missing schedule: %v, want ErrNotFound", err)
	}
	// Survives a reopen.
	s = reopen(t, s)
	got, err := s.GetSchedule(ctx, "every")
	if err != nil {
		t.Fatal(err)
	}
	want := every
	want.LastFiredAt = fired
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("GetSchedule after SetLastFired (-want +got):\n%s", diff)
	}
	if _, err := s.GetSchedule(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("GetSchedule of a missing schedule: %v, want ErrNotFound", err)
	}

	if err := s.DeleteSchedule(ctx, "every"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSchedule(ctx, "every"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second DeleteSchedule: %v, want ErrNotFound", err)
	}
	list, err = s.ListSchedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.Schedule{nightly}, list); diff != "" {
		t.Errorf("ListSchedules after delete (-want +got):\n%s", diff)
	}
	// The name is free again.
	if err := s.CreateSchedule(ctx, every); err != nil {
		t.Errorf("CreateSchedule after delete: %v", err)
	}
}
