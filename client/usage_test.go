package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/apiserver"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/store"
)

// usageServer is an API server with a meter over a real store that holds
// one minute of service web an hour before now and the life of its
// replica web-1, from 90 to 30 minutes before now.
func usageServer(t *testing.T, now time.Time) *client.Client {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.AddUsageMinutes(ctx, []stratus.UsageMinute{{
		Kind: stratus.KindService, Name: "web", Minute: now.Add(-time.Hour), Requests: 7,
		Replicas: 1, MemoryMB: 512, VCPU: 1,
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = st.InsertReplicaUsages(ctx, []stratus.ReplicaUsage{{
		Service: "web", Revision: 3, Replica: "web-1", Start: now.Add(-90 * time.Minute), End: now.Add(-30 * time.Minute),
		CPU: 1, MemoryMB: 512, CPUMs: 1500, Requests: 7,
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(apiserver.New(apiserver.Config{
		Token: "tok", Log: slog.New(slog.DiscardHandler), Store: st,
		Meter: meter.New(meter.Default(), "r1"), Info: v1.Info{Region: "r1"},
		Now: func() time.Time { return now },
	}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL, "tok")
}

func TestUsage(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	c := usageServer(t, now)
	ctx := context.Background()
	for _, tc := range []struct {
		since, by string
		wantBy    string
		wantSince time.Time
		rows      int
	}{
		{"", "", v1.ByFunction, now.Add(-24 * time.Hour), 0},
		{"2h", v1.ByService, v1.ByService, now.Add(-2 * time.Hour), 1},
		{"30m", v1.ByService, v1.ByService, now.Add(-30 * time.Minute), 0},
		{"1d", v1.ByDay, v1.ByDay, now.Add(-24 * time.Hour), 1},
		{"2h", v1.ByReplica, v1.ByReplica, now.Add(-2 * time.Hour), 1},
		{"20m", v1.ByReplica, v1.ByReplica, now.Add(-20 * time.Minute), 0},
	} {
		rep, err := c.Usage(ctx, tc.since, tc.by)
		if err != nil {
			t.Errorf("Usage(%q, %q): %v", tc.since, tc.by, err)
			continue
		}
		if rep.By != tc.wantBy || !rep.Since.Equal(tc.wantSince) || len(rep.Rows) != tc.rows || rep.Region != "r1" {
			t.Errorf("Usage(%q, %q) = by %s since %v, %d rows, region %q; want by %s since %v, %d rows, region r1",
				tc.since, tc.by, rep.By, rep.Since, len(rep.Rows), rep.Region, tc.wantBy, tc.wantSince, tc.rows)
		}
		if tc.rows == 1 && (rep.Total.Requests != 7 || rep.Total.CostUSD <= 0) {
			t.Errorf("Usage(%q, %q): total %+v, want 7 requests at a cost", tc.since, tc.by, rep.Total)
		}
	}
	rep, err := c.Usage(ctx, "1h", v1.ByReplica)
	if err != nil {
		t.Fatalf("Usage(1h, replica): %v", err)
	}
	// The life began before the window; its figures are whole: an hour of
	// 1 vCPU and 512 MB.
	if len(rep.Rows) != 1 {
		t.Fatalf("Usage(1h, replica): rows %+v, want web-1's", rep.Rows)
	}
	if r := rep.Rows[0]; r.Key != "web-1" || r.Kind != stratus.KindService || r.Service != "web" || r.Revision != 3 ||
		!r.Start.Equal(now.Add(-90*time.Minute)) || !r.End.Equal(now.Add(-30*time.Minute)) ||
		r.VCPUSeconds != 3600 || r.GBSeconds != 1800 || r.CPUSeconds != 1.5 || r.CostUSD <= 0 {
		t.Errorf("Usage(1h, replica): row %+v; want web-1 of web revision 3, its whole hour", r)
	}
	_, err = c.Usage(ctx, "yesterday", "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != v1.CodeInvalid {
		t.Errorf("Usage(yesterday): %v, want an API error %s", err, v1.CodeInvalid)
	}
}

func TestAdvice(t *testing.T) {
	c := usageServer(t, time.Now())
	ctx := context.Background()
	_, err := c.Advice(ctx, "nosuch", "7d", "800ms")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != v1.CodeNotFound || ae.Message != `function or service "nosuch": not found` {
		t.Errorf("Advice(nosuch): %v, want not found", err)
	}
	_, err = c.Advice(ctx, "nosuch", "7d", "soon")
	if !errors.As(err, &ae) || ae.Code != v1.CodeInvalid {
		t.Errorf("Advice(budget soon): %v, want invalid", err)
	}
	// No functions nor services are deployed on this server.
	l, err := c.AdviceAll(ctx, "")
	if err != nil || l.Advice == nil || len(l.Advice) != 0 {
		t.Errorf("AdviceAll = %+v, %v; want an empty list", l, err)
	}
	if _, err := c.AdviceAll(ctx, "0"); !errors.As(err, &ae) || ae.Code != v1.CodeInvalid {
		t.Errorf("AdviceAll(0): %v, want invalid", err)
	}
}
