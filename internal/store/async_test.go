package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestAsyncStatuses(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1700000000, 0).UTC()
	st := func(state string, attempt int, at time.Duration) stratus.AsyncStatus {
		return stratus.AsyncStatus{RequestID: "r1", Function: "f", State: state, Attempt: attempt,
			EnqueuedAt: t0, UpdatedAt: t0.Add(at)}
	}
	failed := st(stratus.AsyncFailed, 3, 3*time.Second)
	failed.ErrorType, failed.ErrorMessage = "Unhandled", "boom"
	// Out of order: the older "running" must not overwrite "failed".
	if err := s.PutAsyncStatuses(ctx, []stratus.AsyncStatus{st(stratus.AsyncQueued, 0, 0), failed, st(stratus.AsyncRunning, 1, time.Second)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAsyncStatus(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&failed, got); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	if _, err := s.GetAsyncStatus(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	// Prune keeps the newest finished ones per function, never live ones.
	var many []stratus.AsyncStatus
	for i := range 10 {
		x := stratus.AsyncStatus{RequestID: string(rune('a' + i)), Function: "g", State: stratus.AsyncSucceeded, EnqueuedAt: t0, UpdatedAt: t0.Add(time.Duration(i) * time.Second)}
		many = append(many, x)
	}
	many = append(many, stratus.AsyncStatus{RequestID: "live", Function: "g", State: stratus.AsyncQueued, EnqueuedAt: t0, UpdatedAt: t0})
	if err := s.PutAsyncStatuses(ctx, many); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, 3, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"h", "i", "j", "live"} {
		if _, err := s.GetAsyncStatus(ctx, id); err != nil {
			t.Errorf("%s pruned: %v", id, err)
		}
	}
	if _, err := s.GetAsyncStatus(ctx, "a"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("oldest status kept: %v", err)
	}
}

// TestAsyncStatusDestination: the destination of a done invocation is
// stored with the state that carries it and read back; a state without
// one (a run again after a crash) clears it.
func TestAsyncStatusDestination(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1700000000, 0).UTC()
	failed := stratus.AsyncStatus{RequestID: "r1", Function: "f", State: stratus.AsyncFailed, Attempt: 3,
		EnqueuedAt: t0, UpdatedAt: t0.Add(time.Second), ErrorType: "Unhandled", ErrorMessage: "boom"}
	routed := failed
	routed.UpdatedAt = t0.Add(2 * time.Second)
	routed.Destination, routed.DestinationState = "function:dlq", stratus.AsyncDestinationDelivered
	for _, batch := range [][]stratus.AsyncStatus{{failed}, {routed}} {
		if err := s.PutAsyncStatuses(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetAsyncStatus(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&routed, got); d != "" {
		t.Errorf("status with its destination (-want +got):\n%s", d)
	}
	// An older state arriving late leaves the destination.
	if err := s.PutAsyncStatuses(ctx, []stratus.AsyncStatus{failed}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAsyncStatus(ctx, "r1"); got == nil || got.Destination != "function:dlq" {
		t.Errorf("after a late older state: %+v, want the destination kept", got)
	}
	running := failed
	running.State, running.Attempt, running.ErrorType, running.ErrorMessage = stratus.AsyncRunning, 4, "", ""
	running.UpdatedAt = t0.Add(3 * time.Second)
	if err := s.PutAsyncStatuses(ctx, []stratus.AsyncStatus{running}); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetAsyncStatus(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&running, got); d != "" {
		t.Errorf("status run again (-want +got):\n%s", d)
	}
}

// TestAsyncStatusesSkewedClocks: servers whose clocks disagree report the
// states of one invocation; whatever their timestamps, and in whatever
// order they are written (each step a write of its own, or one batch),
// the stored state is the furthest in the invocation's progress.
func TestAsyncStatusesSkewedClocks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1700000000, 0).UTC()
	ms := time.Millisecond
	st := func(state string, attempt int, at time.Duration) stratus.AsyncStatus {
		x := stratus.AsyncStatus{Function: "f", State: state, Attempt: attempt, EnqueuedAt: t0, UpdatedAt: t0.Add(at)}
		if state == stratus.AsyncFailed || state == stratus.AsyncRetrying {
			x.ErrorType, x.ErrorMessage = "Unhandled", fmt.Sprintf("attempt %d", attempt)
		}
		return x
	}
	for i, c := range []struct {
		name  string
		steps []stratus.AsyncStatus
		want  int // the index in steps of the state left
		batch bool
	}{
		{"queued by a server 50 ms ahead, succeeded 10 ms later by another",
			[]stratus.AsyncStatus{st(stratus.AsyncQueued, 0, 50*ms), st(stratus.AsyncSucceeded, 1, 10*ms)}, 1, false},
		{"the same, written in the other order",
			[]stratus.AsyncStatus{st(stratus.AsyncSucceeded, 1, 10*ms), st(stratus.AsyncQueued, 0, 50*ms)}, 0, false},
		{"the same, in one batch",
			[]stratus.AsyncStatus{st(stratus.AsyncQueued, 0, 50*ms), st(stratus.AsyncSucceeded, 1, 10*ms)}, 1, true},
		{"running ahead, then retrying behind",
			[]stratus.AsyncStatus{st(stratus.AsyncRunning, 1, time.Second), st(stratus.AsyncRetrying, 1, 0)}, 1, false},
		{"retrying ahead, then the next attempt running behind",
			[]stratus.AsyncStatus{st(stratus.AsyncRetrying, 1, time.Second), st(stratus.AsyncRunning, 2, 0)}, 1, false},
		{"the next attempt running ahead, the retrying before it late",
			[]stratus.AsyncStatus{st(stratus.AsyncRunning, 2, 0), st(stratus.AsyncRetrying, 1, time.Second)}, 0, false},
		{"running ahead, then failed behind",
			[]stratus.AsyncStatus{st(stratus.AsyncRunning, 2, time.Second), st(stratus.AsyncFailed, 2, 0)}, 1, false},
		{"running, then failed for a function gone at the attempts made before",
			[]stratus.AsyncStatus{st(stratus.AsyncRunning, 2, time.Second), st(stratus.AsyncFailed, 1, 0)}, 1, false},
		{"succeeded, then every earlier state late and stamped later",
			[]stratus.AsyncStatus{st(stratus.AsyncSucceeded, 2, 0), st(stratus.AsyncRunning, 2, time.Second),
				st(stratus.AsyncRetrying, 1, time.Second), st(stratus.AsyncQueued, 0, time.Hour)}, 0, false},
		{"a duplicate enqueue after the end, stamped later",
			[]stratus.AsyncStatus{st(stratus.AsyncFailed, 3, 0), st(stratus.AsyncQueued, 3, time.Hour)}, 0, false},
		{"handed back when throttled, then run",
			[]stratus.AsyncStatus{st(stratus.AsyncRunning, 1, 0), st(stratus.AsyncQueued, 0, ms), st(stratus.AsyncRunning, 1, 2*ms)}, 2, false},
		{"handed back when throttled",
			[]stratus.AsyncStatus{st(stratus.AsyncRunning, 1, 0), st(stratus.AsyncQueued, 0, ms)}, 1, false},
		{"a failure written twice by two servers, the later first",
			[]stratus.AsyncStatus{st(stratus.AsyncFailed, 3, time.Second), st(stratus.AsyncFailed, 3, 0)}, 0, false},
	} {
		id := fmt.Sprintf("r%d", i)
		for j := range c.steps {
			c.steps[j].RequestID = id
		}
		batches := [][]stratus.AsyncStatus{c.steps}
		if !c.batch {
			batches = nil
			for _, x := range c.steps {
				batches = append(batches, []stratus.AsyncStatus{x})
			}
		}
		for _, b := range batches {
			if err := s.PutAsyncStatuses(ctx, b); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		got, err := s.GetAsyncStatus(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d := cmp.Diff(&c.steps[c.want], got); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
	}
}

// TestReportLineReadsAsEndAndReport: one stored report line is read back as
// END then REPORT, with distinct increasing IDs that page correctly.
func TestReportLineReadsAsEndAndReport(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	now := time.Now()
	in := []stratus.LogLine{
		{Function: "f", Time: now, RequestID: "r", Stream: stratus.StreamPlatform, Text: "START RequestId: r Version: $LATEST"},
		{Function: "f", Time: now, RequestID: "r", Stream: stratus.StreamStdout, Text: "hello"},
		{Function: "f", Time: now, RequestID: "r", Stream: stratus.StreamReport, Text: "REPORT RequestId: r\tDuration: 1.00 ms"},
	}
	if err := s.InsertLogs(ctx, in); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListLogs(ctx, "f", LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for i, l := range all {
		texts = append(texts, l.Text)
		if i > 0 && l.ID <= all[i-1].ID {
			t.Errorf("IDs not increasing: %d after %d", l.ID, all[i-1].ID)
		}
		if l.Stream == stratus.StreamReport {
			t.Errorf("a line reads back with the internal stream %q", l.Stream)
		}
	}
	want := []string{"START RequestId: r Version: $LATEST", "hello", "END RequestId: r", "REPORT RequestId: r\tDuration: 1.00 ms"}
	if d := cmp.Diff(want, texts); d != "" {
		t.Fatalf("lines (-want +got):\n%s", d)
	}
	// Paging from the END line yields only the REPORT line.
	rest, err := s.ListLogs(ctx, "f", LogQuery{AfterID: all[2].ID})
	if err != nil || len(rest) != 1 || rest[0].Text != want[3] {
		t.Errorf("after END: %v %v, want the REPORT line only", rest, err)
	}
}
