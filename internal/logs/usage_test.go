package logs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// The services package hands services' usage to the Writer through this.
var _ interface {
	UsageMinute(stratus.UsageMinute)
	ReplicaUsage(stratus.ReplicaUsage)
} = (*Writer)(nil)

var m0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func serviceMinute(requests int64, replicas float64) stratus.UsageMinute {
	return stratus.UsageMinute{Kind: stratus.KindService, Name: "s", Minute: m0, Requests: requests,
		DurationMs: float64(requests) * 10, MaxInFlight: int(requests), Replicas: replicas,
		MemoryMB: 512, VCPU: 1, Arch: stratus.ArchX86}
}

func life(id string, end time.Time) stratus.ReplicaUsage {
	return stratus.ReplicaUsage{Service: "s", Revision: 1, Replica: id, Start: m0, End: end,
		CPU: 1, MemoryMB: 512, CPUMs: 900, Requests: 7, Arch: stratus.ArchX86}
}

// wantUsage fails unless st holds exactly the service minutes and
// replica lives given.
func wantUsage(t *testing.T, st *store.Store, mins []stratus.UsageMinute, lives []stratus.ReplicaUsage) {
	t.Helper()
	ctx := t.Context()
	got, err := st.UsageMinutes(ctx, store.UsageQuery{Kind: stratus.KindService})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mins, got); diff != "" {
		t.Errorf("service minutes (-want +got):\n%s", diff)
	}
	gotLives, err := st.ReplicaUsages(ctx, "", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lives, gotLives); diff != "" {
		t.Errorf("replica lives (-want +got):\n%s", diff)
	}
}

// TestUsageStored: usage minutes and replica lives queued before a Sync
// are stored once it returns; the minutes of one minute add up, a life
// reported again replaces its row, and their bytes count in the queue
// until stored.
func TestUsageStored(t *testing.T) {
	st := open(t)
	w := New(Config{Store: st})
	w.UsageMinute(serviceMinute(3, 0.5))
	w.ReplicaUsage(life("r1", m0.Add(30*time.Second)))
	u := serviceMinute(3, 0.5)
	l := life("r1", m0.Add(30*time.Second))
	if q, want := w.Stats().QueuedBytes, minuteCost(&u)+replicaCost(&l); q != want {
		t.Errorf("%d bytes queued, want %d", q, want)
	}
	start(t, w)
	w.UsageMinute(serviceMinute(2, 0.5))
	w.ReplicaUsage(life("r1", m0.Add(time.Minute)))
	w.ReplicaUsage(life("r2", m0.Add(time.Minute)))
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	sum := serviceMinute(5, 1)
	sum.DurationMs, sum.MaxInFlight = 50, 3
	wantUsage(t, st, []stratus.UsageMinute{sum},
		[]stratus.ReplicaUsage{life("r1", m0.Add(time.Minute)), life("r2", m0.Add(time.Minute))})
	if q := w.Stats().QueuedBytes; q != 0 {
		t.Errorf("%d bytes queued after Sync, want 0", q)
	}
}

// TestUsageKeptWhileStoreFails: usage the store failed to take is kept,
// tried again and stored exactly once when the store works again, with
// the records stored before it not stored twice.
func TestUsageKeptWhileStoreFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   func(f *full, on bool)
		health string
	}{
		{"store fails", func(f *full, on bool) { f.full.Store(on) }, "store invocation records: "},
		{"usage fails after the records", func(f *full, on bool) { f.fullUsage.Store(on) }, "store usage minutes: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			st := &full{Store: open(t)}
			w := New(Config{Store: st})
			start(t, w)
			tc.fail(st, true)
			w.Record(stratus.Invocation{RequestID: "a", Function: "f", Start: m0, MemoryMB: 128,
				DurationMs: 5, BilledMs: 5, Outcome: stratus.OutcomeSuccess})
			w.UsageMinute(serviceMinute(3, 1))
			w.ReplicaUsage(life("r1", m0.Add(time.Minute)))
			if err := w.Sync(ctx); !errors.Is(err, errFull) {
				t.Fatalf("Sync with a failing store: %v", err)
			}
			if h := w.Health(); h == nil || !strings.HasPrefix(h.Error(), tc.health) {
				t.Fatalf("Health = %v, want it to begin %q", h, tc.health)
			}
			errs := w.Stats().StoreErrors
			eventually.True(t, 10*time.Second, "a retry", func() bool { return w.Stats().StoreErrors > errs })
			if w.Stats().QueuedBytes == 0 {
				t.Error("nothing queued after a failed store")
			}
			tc.fail(st, false)
			if err := w.Sync(ctx); err != nil {
				t.Fatalf("Sync once the store works: %v", err)
			}
			wantUsage(t, st.Store, []stratus.UsageMinute{serviceMinute(3, 1)},
				[]stratus.ReplicaUsage{life("r1", m0.Add(time.Minute))})
			fn, err := st.UsageMinutes(ctx, store.UsageQuery{Kind: stratus.KindFunction})
			if err != nil || len(fn) != 1 || fn[0].Requests != 1 {
				t.Errorf("function minutes %+v (%v), want one of one request", fn, err)
			}
			if q := w.Stats().QueuedBytes; q != 0 {
				t.Errorf("%d bytes queued after recovery", q)
			}
		})
	}
}

// TestUsageKeptLikeRecords: while the store fails, usage has the part of
// the queue log lines may not take, and beyond the whole queue it is
// dropped, counted, and fails Syncs like a dropped record.
func TestUsageKeptLikeRecords(t *testing.T) {
	st := &full{Store: open(t)}
	const max = 1 << 20
	w := New(Config{Store: st, QueueBytes: max})
	start(t, w)
	ctx := t.Context()
	st.full.Store(true)
	w.Log(line("f", "a", 1))
	if err := w.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded on a failing store")
	}
	// Lines take all they may; more are dropped.
	for range 20 {
		w.Log(line("f", "a", 64<<10))
	}
	if w.Stats().DroppedLines == 0 {
		t.Fatal("no line dropped: the queue is not full of lines")
	}
	// Short lines fill what is left up to less than one more line, and
	// a line costs less than a usage minute.
	for dropped := w.Stats().DroppedLines; w.Stats().DroppedLines == dropped; {
		w.Log(line("f", "a", 1))
	}
	w.UsageMinute(serviceMinute(1, 1))
	w.ReplicaUsage(life("r1", m0.Add(time.Minute)))
	if n := w.Stats().DroppedRecords; n != 0 {
		t.Fatalf("%d records dropped with an eighth of the queue free", n)
	}
	u := serviceMinute(1, 1)
	for range 2 * max / minuteCost(&u) {
		w.UsageMinute(serviceMinute(1, 1))
	}
	if w.Stats().DroppedRecords == 0 {
		t.Fatal("no usage minute dropped beyond the queue's bound")
	}
	if q := w.Stats().QueuedBytes; q > max {
		t.Errorf("%d bytes queued, bound %d", q, max)
	}
	st.full.Store(false)
	eventually.True(t, 10*time.Second, "recovery", func() bool { return w.Health() == nil })
	if err := w.Sync(ctx); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("Sync just after usage was dropped: %v", err)
	}
	lives, err := st.ReplicaUsages(ctx, "s", time.Time{}, time.Time{})
	if err != nil || len(lives) != 1 {
		t.Errorf("replica lives %v (%v), want the one queued", lives, err)
	}
}

// TestPrunesUsage: the prune pass removes usage older than
// Retention.Usage (35 days when zero), and keeps the rest.
func TestPrunesUsage(t *testing.T) {
	if got := (Config{}).withDefaults().Retention.Usage; got != DefaultRetainUsage {
		t.Errorf("Retention.Usage defaults to %v, want %v", got, DefaultRetainUsage)
	}
	if got := (Config{Retention: Retention{Usage: -1}}).withDefaults().Retention.Usage; got != -1 {
		t.Errorf("Retention.Usage -1 became %v", got)
	}
	st := open(t)
	w := New(Config{Store: st, Retention: Retention{Every: 10 * time.Millisecond}})
	now := time.Now().UTC().Truncate(time.Minute)
	for _, age := range []time.Duration{36 * 24 * time.Hour, 34 * 24 * time.Hour} {
		w.UsageMinute(stratus.UsageMinute{Kind: stratus.KindService, Name: "s", Minute: now.Add(-age), Requests: 1})
		w.ReplicaUsage(stratus.ReplicaUsage{Service: "s", Replica: "r", Start: now.Add(-age - time.Hour), End: now.Add(-age)})
	}
	start(t, w)
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "old usage pruned", func() bool {
		mins, err := st.UsageMinutes(t.Context(), store.UsageQuery{})
		lives, err2 := st.ReplicaUsages(t.Context(), "", time.Time{}, time.Time{})
		return err == nil && err2 == nil && len(mins) == 1 && len(lives) == 1
	})
	mins, err := st.UsageMinutes(t.Context(), store.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-34 * 24 * time.Hour); !mins[0].Minute.Equal(want) {
		t.Errorf("kept the minute of %v, want %v", mins[0].Minute, want)
	}
	lives, err := st.ReplicaUsages(t.Context(), "", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-34 * 24 * time.Hour); !lives[0].End.Equal(want) {
		t.Errorf("kept the life that ended %v, want %v", lives[0].End, want)
	}
}
