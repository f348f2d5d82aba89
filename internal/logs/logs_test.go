package logs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

func open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir()+"/s.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestSyncStoresWhatCameBefore: once Sync returns, every line, record and
// status queued before it can be read back, from many callers at once.
func TestSyncStoresWhatCameBefore(t *testing.T) {
	st := open(t)
	w := New(Config{Store: st, Retention: Retention{Invocations: 1000, LogLines: 1000}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + i))
			w.Log(stratus.LogLine{Function: "f", Time: time.Now(), RequestID: id, Stream: "stdout", Text: "hello " + id})
			w.Record(stratus.Invocation{RequestID: id, Function: "f", Start: time.Now(), Outcome: stratus.OutcomeSuccess})
			w.AsyncStatus(stratus.AsyncStatus{RequestID: id, Function: "f", State: stratus.AsyncSucceeded, UpdatedAt: time.Now()})
			if err := w.Sync(ctx); err != nil {
				t.Errorf("Sync: %v", err)
				return
			}
			if recs, err := st.ListInvocations(ctx, "f", store.InvocationQuery{RequestID: id}); err != nil || len(recs) != 1 {
				t.Errorf("record %s after Sync: %v %v", id, recs, err)
			}
			if lines, err := st.ListLogs(ctx, "f", store.LogQuery{RequestID: id}); err != nil || len(lines) != 1 {
				t.Errorf("log line %s after Sync: %v %v", id, lines, err)
			}
			if s, err := st.GetAsyncStatus(ctx, id); err != nil || s.State != stratus.AsyncSucceeded {
				t.Errorf("status %s after Sync: %v %v", id, s, err)
			}
		}()
	}
	wg.Wait()
}

// TestRunStoresQueuedAtStop: what is queued when Run's ctx ends is stored
// before Run returns, and later calls neither block nor panic.
func TestRunStoresQueuedAtStop(t *testing.T) {
	st := open(t)
	w := New(Config{Store: st, Retention: Retention{Invocations: 1000, LogLines: 1000}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	for i := range 100 {
		w.Record(stratus.Invocation{RequestID: string(rune('A' + i)), Function: "g", Start: time.Now(), Outcome: stratus.OutcomeSuccess})
	}
	cancel()
	<-done
	recs, err := st.ListInvocations(context.Background(), "g", store.InvocationQuery{Limit: 1000})
	if err != nil || len(recs) != 100 {
		t.Fatalf("%d records stored at stop (%v), want 100", len(recs), err)
	}
	w.Log(stratus.LogLine{Function: "g", Text: "late"})
	if err := w.Sync(context.Background()); err == nil {
		t.Error("Sync after stop succeeded")
	}
}

// TestLinesDoNotWakeTheLoop: lines and records wait for the loop's tick
// (no goroutine switch per invocation); a Sync or a batch's worth wakes
// it.
func TestLinesDoNotWakeTheLoop(t *testing.T) {
	w := New(Config{Store: open(t)})
	woken := func() bool {
		select {
		case <-w.wake:
			return true
		default:
			return false
		}
	}
	for range 3 {
		w.Log(stratus.LogLine{Function: "f", Text: "a line"})
		w.Record(stratus.Invocation{Function: "f", RequestID: "r"})
	}
	if woken() {
		t.Fatal("a line or a record woke the loop")
	}
	w.put(item{sync: make(chan error, 1)}, 0, w.max)
	if !woken() {
		t.Fatal("a Sync did not wake the loop")
	}
	for range batchSize {
		w.Log(stratus.LogLine{Function: "f", Text: "a line"})
	}
	if !woken() {
		t.Fatal("a batch's worth of lines did not wake the loop")
	}
}
