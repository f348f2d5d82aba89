package logs

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// full is a real store that fails every write while full is set, as
// SQLite does on a full disk, and only the writes of usage while
// fullUsage is set.
type full struct {
	*store.Store
	full      atomic.Bool
	fullUsage atomic.Bool
}

var errFull = errors.New("database or disk is full (13)")

func (f *full) InsertLogs(ctx context.Context, l []stratus.LogLine) error {
	if f.full.Load() {
		return errFull
	}
	return f.Store.InsertLogs(ctx, l)
}

func (f *full) InsertInvocations(ctx context.Context, r []stratus.Invocation) error {
	if f.full.Load() {
		return errFull
	}
	return f.Store.InsertInvocations(ctx, r)
}

func (f *full) PutAsyncStatuses(ctx context.Context, s []stratus.AsyncStatus) error {
	if f.full.Load() {
		return errFull
	}
	return f.Store.PutAsyncStatuses(ctx, s)
}

func (f *full) AddUsageMinutes(ctx context.Context, us []stratus.UsageMinute) error {
	if f.full.Load() || f.fullUsage.Load() {
		return errFull
	}
	return f.Store.AddUsageMinutes(ctx, us)
}

func (f *full) InsertReplicaUsages(ctx context.Context, us []stratus.ReplicaUsage) error {
	if f.full.Load() || f.fullUsage.Load() {
		return errFull
	}
	return f.Store.InsertReplicaUsages(ctx, us)
}

// start runs w until the test ends.
func start(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func line(fn, req string, n int) stratus.LogLine {
	return stratus.LogLine{Function: fn, Time: time.Now(), RequestID: req, Stream: "stdout", Text: strings.Repeat("x", n)}
}

// TestQueueBoundedInBytes: lines fill the queue up to its bound in bytes
// (less the eighth kept for records), then Log waits; once the writer runs,
// everything is stored.
func TestQueueBoundedInBytes(t *testing.T) {
	st := open(t)
	const max = 1 << 20
	w := New(Config{Store: st, QueueBytes: max})
	const size = 64 << 10
	cost := lineCost(&stratus.LogLine{Function: "f", RequestID: "r", Stream: "stdout", Text: strings.Repeat("x", size)})
	fits := int((max - max/8) / cost)
	var logged atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 40 {
			w.Log(line("f", "r", size))
			logged.Add(1)
		}
	}()
	eventually.True(t, 10*time.Second, "the queue to fill", func() bool { return logged.Load() == int64(fits) })
	// The writer does not run: nothing can make room, so the next Log
	// waits and the queue holds no more than its bound.
	select {
	case <-done:
		t.Fatal("all lines queued beyond the bound")
	default:
	}
	if q := w.Stats().QueuedBytes; q > max-max/8 || q < int64(fits)*cost {
		t.Errorf("queued %d bytes, want %d (bound %d)", q, int64(fits)*cost, max)
	}
	// A record still fits: the last eighth is kept for records and statuses.
	w.Record(stratus.Invocation{RequestID: "r", Function: "f", Start: time.Now(), Outcome: stratus.OutcomeSuccess})
	start(t, w)
	<-done
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines, err := st.ListLogs(context.Background(), "f", store.LogQuery{Limit: 100})
	if err != nil || len(lines) != 40 {
		t.Fatalf("%d lines stored (%v), want 40", len(lines), err)
	}
	if q := w.Stats().QueuedBytes; q != 0 {
		t.Errorf("%d bytes queued after Sync, want 0", q)
	}
}

// TestStoreFailureKeepsBatch: while the store fails, Sync returns its error
// and Health says what failed; what failed to be stored is kept and stored
// once the store works again, exactly once, with no restart.
func TestStoreFailureKeepsBatch(t *testing.T) {
	st := &full{Store: open(t)}
	w := New(Config{Store: st})
	start(t, w)
	ctx := context.Background()
	if err := w.Health(); err != nil {
		t.Fatalf("Health before any store: %v", err)
	}
	st.full.Store(true)
	w.Log(line("f", "a", 10))
	w.Record(stratus.Invocation{RequestID: "a", Function: "f", Start: time.Now(), Outcome: stratus.OutcomeSuccess})
	w.AsyncStatus(stratus.AsyncStatus{RequestID: "a", Function: "f", State: stratus.AsyncSucceeded, UpdatedAt: time.Now()})
	err := w.Sync(ctx)
	if err == nil || !errors.Is(err, errFull) {
		t.Fatalf("Sync with a full store: %v", err)
	}
	h := w.Health()
	if h == nil || !strings.HasPrefix(h.Error(), "store invocation records: database or disk is full") {
		t.Fatalf("Health = %v", h)
	}
	// It keeps trying on its own, and keeps failing.
	errs := w.Stats().StoreErrors
	eventually.True(t, 10*time.Second, "a retry", func() bool { return w.Stats().StoreErrors > errs })
	if w.Stats().QueuedBytes == 0 {
		t.Error("nothing queued after a failed store")
	}
	st.full.Store(false)
	if err := w.Sync(ctx); err != nil {
		t.Fatalf("Sync once the store works: %v", err)
	}
	if err := w.Health(); err != nil {
		t.Errorf("Health once the store works: %v", err)
	}
	if recs, err := st.ListInvocations(ctx, "f", store.InvocationQuery{}); err != nil || len(recs) != 1 {
		t.Errorf("records %v (%v), want 1", recs, err)
	}
	if lines, err := st.ListLogs(ctx, "f", store.LogQuery{}); err != nil || len(lines) != 1 {
		t.Errorf("lines %v (%v), want 1", lines, err)
	}
	if s, err := st.GetAsyncStatus(ctx, "a"); err != nil || s.State != stratus.AsyncSucceeded {
		t.Errorf("status %v (%v)", s, err)
	}
	if q := w.Stats().QueuedBytes; q != 0 {
		t.Errorf("%d bytes queued after recovery", q)
	}
}

// TestFailingStoreDoesNotWedge: with the store failing and the queue
// full, Log drops lines (counted) instead of waiting, records and statuses
// use the rest of the queue, and beyond it they are dropped and every Sync
// for a minute after fails, so that no event is acked without its trace.
func TestFailingStoreDoesNotWedge(t *testing.T) {
	st := &full{Store: open(t)}
	const max = 1 << 20
	now := time.Unix(2e9, 0)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	w := New(Config{Store: st, QueueBytes: max, Now: func() time.Time { return *clock.Load() }})
	start(t, w)
	ctx := context.Background()
	st.full.Store(true)
	w.Log(line("f", "a", 1))
	if err := w.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded on a full store")
	}
	// 4 MiB of lines into a 1 MiB queue: they do not wait.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 64 {
			w.Log(line("f", "a", 64<<10))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log waits on a failed store")
	}
	if n := w.Stats().DroppedLines; n < 64-16 {
		t.Errorf("%d lines dropped, want at least 48", n)
	}
	if q := w.Stats().QueuedBytes; q > max {
		t.Errorf("%d bytes queued, bound %d", q, max)
	}
	// Records fill the rest; beyond it, they are dropped too.
	for i := range 2000 {
		w.Record(stratus.Invocation{RequestID: "r" + string(rune('a'+i%26)), Function: "g", Start: time.Now(), Outcome: stratus.OutcomeSuccess})
	}
	if w.Stats().DroppedRecords == 0 {
		t.Fatal("no record dropped beyond the bound")
	}
	if q := w.Stats().QueuedBytes; q > max {
		t.Errorf("%d bytes queued, bound %d", q, max)
	}
	st.full.Store(false)
	eventually.True(t, 10*time.Second, "recovery", func() bool { return w.Health() == nil })
	// Stored now, but a record was dropped a moment ago: Sync fails...
	if err := w.Sync(ctx); err == nil || !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("Sync just after a record was dropped: %v", err)
	}
	// ...for a minute.
	later := now.Add(lossWindow)
	clock.Store(&later)
	if err := w.Sync(ctx); err != nil {
		t.Errorf("Sync a minute later: %v", err)
	}
}
