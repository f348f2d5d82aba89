package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// liveIDs returns the request IDs of fn's events the Queue holds as taken
// and not done, sorted.
func liveIDs(q *Queue, fn string) []string {
	q.stats.mu.Lock()
	defer q.stats.mu.Unlock()
	var ids []string
	if f := q.stats.byFn[fn]; f != nil {
		for id := range f.live {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// publishEvent stores an event of fn as a plain NATS client would, first
// enqueued at enqueued and not to be run before notBefore (none when
// zero), and returns its stream sequence.
func publishEvent(t *testing.T, b *Bus, fn, id string, enqueued, notBefore time.Time) uint64 {
	t.Helper()
	msg := nats.NewMsg(AsyncSubject(fn))
	msg.Data = []byte(`{}`)
	msg.Header.Set(hdrRequestID, id)
	msg.Header.Set(hdrEnqueuedAt, enqueued.UTC().Format(time.RFC3339Nano))
	if !notBefore.IsZero() {
		msg.Header.Set(hdrNotBefore, notBefore.UTC().Format(time.RFC3339Nano))
	}
	ack, err := b.js.PublishMsg(t.Context(), msg)
	if err != nil {
		t.Fatalf("publish event %s of %s: %v", id, fn, err)
	}
	return ack.Sequence
}

// TestLiveSweep: an event taken and not done is forgotten once it is older
// than keep, at a sweep, and sweeps come at most once per liveSweepEvery.
func TestLiveSweep(t *testing.T) {
	const keep = 10 * time.Minute
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	type step struct {
		at    time.Duration // after t0: the clock
		track string        // the event taken then ("": none, only a sweep)
		from  time.Duration // after t0: its first enqueue
		want  []string      // live afterwards
	}
	steps := []step{
		{at: 0, track: "a", from: 0, want: []string{"a"}},
		{at: 9 * time.Minute, track: "b", from: 9 * time.Minute, want: []string{"a", "b"}},
		{at: keep, track: "c", from: keep, want: []string{"a", "b", "c"}}, // a is keep old: not older
		// a is older, but the last sweep was less than liveSweepEvery ago.
		{at: keep + 30*time.Second, track: "d", from: keep, want: []string{"a", "b", "c", "d"}},
		// A sweep forgets a; an old event delivered again is taken.
		{at: keep + time.Minute, track: "old", from: 0, want: []string{"b", "c", "d", "old"}},
		// The next sweep forgets it.
		{at: keep + 2*time.Minute, want: []string{"b", "c", "d"}},
		{at: 3 * keep, want: nil},
	}
	var c queueCounters
	for _, s := range steps {
		now := t0.Add(s.at)
		if s.track != "" {
			c.track("f", s.track, t0.Add(s.from), now, keep)
		} else {
			c.mu.Lock()
			c.byFn["f"].sweep(now)
			c.mu.Unlock()
		}
		var got []string
		for id := range c.byFn["f"].live {
			got = append(got, id)
		}
		slices.Sort(got)
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("at t0+%s: live (-want +got):\n%s", s.at, diff)
		}
	}
}

// TestQueueStatsForgetEventsDoneElsewhere: events this server took and
// another finished (deleted from the stream while they waited for their
// next attempt here) do not stay among its events not done once they are
// older than their function's events can be, and do not age the queue.
func TestQueueStatsForgetEventsDoneElsewhere(t *testing.T) {
	var clock shiftedClock
	h := newHarness(t, "", &fakeInvoker{}, newPolicies("f", AsyncPolicy{MaxEventAge: time.Minute, Timeout: time.Second}))
	h.configure(clock.configure)
	h.run()
	if err := h.q.Ensure(t.Context(), "f"); err != nil {
		t.Fatal(err)
	}
	// Events waiting two days for their next attempt: taken, put back.
	later := func() time.Time { return clock.now().Add(48 * time.Hour) }
	old := []string{"old-1", "old-2", "old-3"}
	var seqs []uint64
	for _, id := range old {
		seqs = append(seqs, publishEvent(t, h.bus, "f", id, clock.now(), later()))
	}
	eventually.True(t, 10*time.Second, "the events taken", func() bool {
		return slices.Equal(liveIDs(h.q, "f"), old)
	})
	// Another server finishes them.
	s, err := h.q.getStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		if err := s.DeleteMsg(t.Context(), seq); err != nil {
			t.Fatalf("delete message %d: %v", seq, err)
		}
	}

	// Past the age the old events could reach here, one more is taken.
	clock.set(h.q.liveFor("f") + time.Minute)
	publishEvent(t, h.bus, "f", "new-1", clock.now(), later())
	eventually.True(t, 10*time.Second, "the new event taken", func() bool {
		return slices.Contains(liveIDs(h.q, "f"), "new-1")
	})
	if diff := cmp.Diff([]string{"new-1"}, liveIDs(h.q, "f")); diff != "" {
		t.Errorf("events taken and not done (-want +got):\n%s", diff)
	}
	var st QueueStats
	eventually.True(t, 5*time.Second, "the depth read", func() bool {
		st = h.q.Stats()["f"]
		return st.Depth == 1
	})
	if st.OldestAge > time.Minute {
		t.Errorf("oldest event's age = %s with one event just enqueued, want under a minute", st.OldestAge)
	}
}

// TestQueueStatsDropRemovedFunction: a removed function's figures stay
// while it has events in the stream and go, counters too, once they are
// done; another function's stay.
func TestQueueStatsDropRemovedFunction(t *testing.T) {
	var failID atomic.Value
	failID.Store("")
	inv := &fakeInvoker{behave: func(_ context.Context, req stratus.Request, _ int) (*stratus.Response, error) {
		if req.RequestID == failID.Load().(string) {
			return fnError("Boom", "always"), nil
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	pol := newPolicies("f", AsyncPolicy{}, "g", AsyncPolicy{})
	h := newHarness(t, "", inv, pol)
	h.run()
	failID.Store("fails-1") // before the worker can take it
	if _, err := h.q.EnqueueID(t.Context(), "f", "fails-1", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	h.enqueue("g", `{"n":2}`)
	h.waitDone(2, 10*time.Second)
	want := map[string]QueueStats{"f": {Expired: 1}, "g": {}}
	var got map[string]QueueStats
	eventually.Nil(t, 10*time.Second, "both functions' figures", func() error {
		if diff := cmp.Diff(want, h.q.Stats()); diff != "" {
			return fmt.Errorf("stats (-want +got):\n%s", diff)
		}
		return nil
	})

	// f is removed while one of its events waits in the stream.
	h.stopRun()
	pol.remove("f")
	publishEvent(t, h.bus, "f", "after-removal", time.Now(), time.Time{})
	want["f"] = QueueStats{Depth: 1, Expired: 1}
	eventually.True(t, 5*time.Second, "the removed function's event counted", func() bool {
		got = h.q.Stats()
		return got["f"].Depth == 1
	})
	if diff := cmp.Diff(want, got, cmpOldestAgeIgnored()); diff != "" {
		t.Errorf("stats with a removed function's event left (-want +got):\n%s", diff)
	}

	h.run()
	if d := h.waitDone(1, 10*time.Second)[0]; d.id != "after-removal" || !errors.Is(d.err, stratus.ErrNotFound) {
		t.Errorf("the removed function's event done as %s, %v; want after-removal, ErrNotFound", d.id, d.err)
	}
	eventually.True(t, 10*time.Second, "the removed function's figures gone", func() bool {
		got = h.q.Stats()
		_, ok := got["f"]
		return !ok
	})
	if diff := cmp.Diff(map[string]QueueStats{"g": {}}, got); diff != "" {
		t.Errorf("stats after the removed function's events are done (-want +got):\n%s", diff)
	}
	h.q.stats.mu.Lock()
	_, kept := h.q.stats.byFn["f"]
	h.q.stats.mu.Unlock()
	if kept {
		t.Error("the removed function's counters are still kept")
	}
}

// cmpOldestAgeIgnored compares QueueStats without OldestAge.
func cmpOldestAgeIgnored() cmp.Option {
	return cmp.Transformer("noAge", func(s QueueStats) QueueStats { s.OldestAge = 0; return s })
}
