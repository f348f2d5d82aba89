package events

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// TestAcksAreBatchedAfterTheTrace: done events share BeforeAck calls (far
// fewer calls than events), and no event leaves the stream (is
// acknowledged) before a BeforeAck that started after its OnDone has
// returned nil.
func TestAcksAreBatchedAfterTheTrace(t *testing.T) {
	const events = 300
	h := newHarness(t, "", &fakeInvoker{}, newPolicies("f", AsyncPolicy{MaxConcurrency: 20}))
	var done, covered, calls atomic.Int64
	h.configure(func(c *QueueConfig) {
		onDone := c.OnDone
		c.OnDone = func(ctx context.Context, fn, id string, event []byte, res *stratus.Response, attempts int, err error) Routing {
			done.Add(1)
			return onDone(ctx, fn, id, event, res, attempts, err)
		}
		c.BeforeAck = func(context.Context) error {
			calls.Add(1)
			n := done.Load()             // every OnDone before this call is covered by it
			time.Sleep(time.Millisecond) // a store write takes a while: acks must wait for it
			covered.Store(n)
			return nil
		}
	})
	for i := range events {
		h.enqueue("f", fmt.Sprintf(`{"i":%d}`, i))
	}
	h.run()
	// Every poll checks that nothing acknowledged is uncovered.
	eventually.True(t, 30*time.Second, "every event acknowledged", func() bool {
		n, _, err := h.q.Depth(t.Context(), "f")
		if err != nil {
			t.Fatal(err)
		}
		if acked, c := int64(events-n), covered.Load(); acked > c {
			t.Fatalf("%d events acknowledged, but BeforeAck covered only %d", acked, c)
		}
		return n == 0
	})
	if got := len(h.waitDone(events, 10*time.Second)); got != events {
		t.Fatalf("%d done, want %d", got, events)
	}
	if c := calls.Load(); c > events/2 {
		t.Errorf("%d BeforeAck calls for %d events; want them batched", c, events)
	} else {
		t.Logf("%d BeforeAck calls for %d events", c, events)
	}
}

// TestStopSettlesDoneEvents: events done when Run stops are acknowledged
// before it returns (the acker settles what is left), so none runs again
// after a restart.
func TestStopSettlesDoneEvents(t *testing.T) {
	const events = 50
	dir := t.TempDir()
	h := newHarness(t, dir, &fakeInvoker{}, newPolicies("f", AsyncPolicy{MaxConcurrency: 10}))
	var syncs atomic.Int64
	h.configure(func(c *QueueConfig) { c.BeforeAck = func(context.Context) error { syncs.Add(1); return nil } })
	for i := range events {
		h.enqueue("f", fmt.Sprintf(`{"i":%d}`, i))
	}
	h.run()
	h.waitDone(events, 20*time.Second)
	h.stopRun() // at once: some acks may still be pending in the acker
	eventually.True(t, 5*time.Second, "an empty stream", func() bool {
		n, _, err := h.q.Depth(t.Context(), "f")
		return err == nil && n == 0
	})
	if syncs.Load() == 0 {
		t.Error("BeforeAck never called")
	}
}
