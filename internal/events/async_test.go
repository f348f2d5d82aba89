package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

func TestEnqueueInvokesOnce(t *testing.T) {
	inv := &fakeInvoker{}
	h := newHarness(t, "", inv, newPolicies("hello", AsyncPolicy{MaxRetries: 2}))
	id := h.enqueue("hello", `{"n":1}`)
	if id == "" {
		t.Fatal("empty request ID")
	}
	if got := h.sink.states(id); !cmp.Equal(got, []string{"queued/0"}) {
		t.Errorf("statuses after enqueue = %v, want [queued/0]", got)
	}
	h.run()
	d := h.waitDone(1, 10*time.Second)[0]
	if d.fn != "hello" || d.id != id || d.event != `{"n":1}` || d.attempts != 1 || d.err != nil {
		t.Errorf("done = %+v, want hello %s event {\"n\":1} after 1 attempt, no error", d, id)
	}
	if d.result == nil || string(d.result.Body) != `"ok"` {
		t.Errorf("done result = %+v, want body \"ok\"", d.result)
	}
	reqs := inv.requests()
	if len(reqs) != 1 || reqs[0].RequestID != id || string(reqs[0].Event) != `{"n":1}` {
		t.Errorf("invocations = %+v, want one with request ID %s and the event", reqs, id)
	}
	if diff := cmp.Diff([]string{"queued/0", "running/1", "succeeded/1"}, h.sink.states(id)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	eventually.True(t, 5*time.Second, "empty queue", func() bool {
		n, _, err := h.q.Depth(t.Context(), "hello")
		return err == nil && n == 0
	})
}

func TestFunctionErrorRetriedThenFails(t *testing.T) {
	inv := &fakeInvoker{behave: func(context.Context, stratus.Request, int) (*stratus.Response, error) {
		return fnError("Handled", "boom"), nil
	}}
	h := newHarness(t, "", inv, newPolicies("bad", AsyncPolicy{MaxRetries: 2}))
	h.run()
	id := h.enqueue("bad", `{}`)
	d := h.waitDone(1, 10*time.Second)[0]
	if d.attempts != 3 {
		t.Errorf("attempts = %d, want 3 (1 + MaxRetries 2)", d.attempts)
	}
	var fe *FunctionError
	if !errors.As(d.err, &fe) || fe.Type != "Handled" || fe.Message != "boom" {
		t.Errorf("done err = %v, want FunctionError Handled: boom", d.err)
	}
	if d.result == nil || d.result.ErrorType != "Handled" {
		t.Errorf("done result = %+v, want the last error response", d.result)
	}
	for _, r := range inv.requests() {
		if r.RequestID != id {
			t.Errorf("attempt with request ID %q, want %q every time", r.RequestID, id)
		}
	}
	if n := inv.callsFor(id); n != 3 {
		t.Errorf("invoked %d times, want 3", n)
	}
	want := []string{"queued/0", "running/1", "retrying/1", "running/2", "retrying/2", "running/3", "failed/3"}
	if diff := cmp.Diff(want, h.sink.states(id)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	h.sink.mu.Lock()
	last := h.sink.byID[id][len(h.sink.byID[id])-1]
	h.sink.mu.Unlock()
	if last.ErrorType != "Handled" || last.ErrorMessage != "boom" || last.EnqueuedAt.IsZero() {
		t.Errorf("final status = %+v, want error Handled/boom and the enqueue time", last)
	}
}

func TestNoRetries(t *testing.T) {
	inv := &fakeInvoker{behave: func(context.Context, stratus.Request, int) (*stratus.Response, error) {
		return fnError("Runtime.ExitError", "exit status 2"), nil
	}}
	h := newHarness(t, "", inv, newPolicies("once", AsyncPolicy{MaxRetries: 0}))
	h.run()
	h.enqueue("once", `{}`)
	if d := h.waitDone(1, 10*time.Second)[0]; d.attempts != 1 || d.err == nil {
		t.Errorf("done = %+v, want a failure after 1 attempt", d)
	}
}

func TestSuccessAfterFailure(t *testing.T) {
	inv := &fakeInvoker{behave: func(_ context.Context, _ stratus.Request, call int) (*stratus.Response, error) {
		if call == 1 {
			return fnError("Runtime.ExitError", "crashed"), nil
		}
		return &stratus.Response{Body: []byte(`"second"`)}, nil
	}}
	h := newHarness(t, "", inv, newPolicies("flaky", AsyncPolicy{MaxRetries: 2}))
	h.run()
	id := h.enqueue("flaky", `{}`)
	d := h.waitDone(1, 10*time.Second)[0]
	if d.err != nil || d.attempts != 2 || string(d.result.Body) != `"second"` {
		t.Errorf("done = %+v (err %v), want success on attempt 2", d, d.err)
	}
	if diff := cmp.Diff([]string{"queued/0", "running/1", "retrying/1", "running/2", "succeeded/2"}, h.sink.states(id)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestMaxConcurrency(t *testing.T) {
	const limit, events = 3, 30
	full := make(chan struct{})
	var once sync.Once
	inv := &fakeInvoker{}
	inv.behave = func(ctx context.Context, _ stratus.Request, _ int) (*stratus.Response, error) {
		if inv.cur.Load() >= limit {
			once.Do(func() { close(full) })
		}
		// Hold every call until the cap has been reached once (bounded), so
		// that calls overlap.
		select {
		case <-full:
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}
	h := newHarness(t, "", inv, newPolicies("capped", AsyncPolicy{MaxConcurrency: limit}))
	ids := make(map[string]bool)
	for i := range events {
		ids[h.enqueue("capped", fmt.Sprintf(`{"i":%d}`, i))] = true
	}
	h.run()
	for _, d := range h.waitDone(events, 20*time.Second) {
		if d.err != nil || !ids[d.id] {
			t.Errorf("done %+v (err %v): want success of an enqueued event", d, d.err)
		}
		delete(ids, d.id)
	}
	if len(ids) != 0 {
		t.Errorf("%d events never done", len(ids))
	}
	if p := inv.peak.Load(); p != limit {
		t.Errorf("peak concurrency %d, want exactly the cap %d", p, limit)
	}
}

func TestThrottledNotCounted(t *testing.T) {
	var throttles atomic.Int64
	inv := &fakeInvoker{behave: func(_ context.Context, _ stratus.Request, call int) (*stratus.Response, error) {
		if call <= 4 {
			throttles.Add(1)
			return nil, fmt.Errorf("function %q: %w", "busy", stratus.ErrCapacity)
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	h := newHarness(t, "", inv, newPolicies("busy", AsyncPolicy{MaxRetries: 0}))
	h.run()
	id := h.enqueue("busy", `{}`)
	d := h.waitDone(1, 10*time.Second)[0]
	if d.err != nil || d.attempts != 1 {
		t.Errorf("done attempts %d err %v, want success counted as attempt 1 after %d throttles", d.attempts, d.err, throttles.Load())
	}
	if n := inv.callsFor(id); n != 5 {
		t.Errorf("invoked %d times, want 5 (4 throttled)", n)
	}
	want := []string{"queued/0"}
	for range 4 {
		want = append(want, "running/1", "queued/0")
	}
	want = append(want, "running/1", "succeeded/1")
	if diff := cmp.Diff(want, h.sink.states(id)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestEnqueueErrors(t *testing.T) {
	h := newHarness(t, "", &fakeInvoker{}, newPolicies("fn", AsyncPolicy{}))
	h.configure(func(c *QueueConfig) { c.MaxEventSize = 1024 })
	tests := []struct {
		name, fn string
		size     int
		want     error
	}{
		{"unknown function", "nope", 10, stratus.ErrNotFound},
		{"bad name", "a.b", 10, stratus.ErrInvalid},
		{"too large", "fn", 1025, stratus.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.q.Enqueue(t.Context(), tt.fn, []byte(strings.Repeat("x", tt.size)))
			if !errors.Is(err, tt.want) {
				t.Errorf("enqueue = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := h.q.Enqueue(t.Context(), "fn", []byte(strings.Repeat("x", 1024))); err != nil {
		t.Errorf("enqueue at the size limit: %v", err)
	}
	if n, _, err := h.q.Depth(t.Context(), "fn"); err != nil || n != 1 {
		t.Errorf("depth = %d, %v; want 1: rejected events must not be stored", n, err)
	}
}

func TestStreamFull(t *testing.T) {
	h := newHarness(t, "", &fakeInvoker{}, newPolicies("fn", AsyncPolicy{}))
	h.configure(func(c *QueueConfig) { c.MaxBytes = 64 << 10 })
	event := []byte(strings.Repeat("x", 8<<10))
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		_, err = h.q.Enqueue(t.Context(), "fn", event)
	}
	if !errors.Is(err, stratus.ErrCapacity) {
		t.Fatalf("enqueue into a full stream = %v, want ErrCapacity", err)
	}
}

func TestRemovedFunctionFails(t *testing.T) {
	inv := &fakeInvoker{}
	pol := newPolicies("gone", AsyncPolicy{})
	h := newHarness(t, "", inv, pol)
	id := h.enqueue("gone", `{}`)
	pol.remove("gone")
	h.run()
	d := h.waitDone(1, 10*time.Second)[0]
	if !errors.Is(d.err, stratus.ErrNotFound) || d.attempts != 0 || d.id != id {
		t.Errorf("done = %+v, want ErrNotFound after 0 attempts", d)
	}
	if len(inv.requests()) != 0 {
		t.Errorf("a removed function was invoked")
	}
	if diff := cmp.Diff([]string{"queued/0", "failed/0"}, h.sink.states(id)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	// Nothing of it left: its consumer (and its worker) go.
	eventually.True(t, 10*time.Second, "the removed function's consumer deleted", func() bool {
		s, err := h.q.getStream(t.Context())
		if err != nil {
			return false
		}
		_, err = s.Consumer(t.Context(), consumerPrefix+"gone")
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
	eventually.True(t, 10*time.Second, "the worker ended", func() bool {
		h.q.mu.Lock()
		defer h.q.mu.Unlock()
		return h.q.consumers["gone"] == nil
	})
	// A later deploy of the name gets its events again.
	pol.set("gone", AsyncPolicy{})
	again := h.enqueue("gone", `{}`)
	if d := h.waitDone(1, 10*time.Second)[0]; d.id != again || d.err != nil {
		t.Errorf("after a new deploy: done = %+v, want %s done", d, again)
	}
}

func TestEventAgeExceeded(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	inv := &fakeInvoker{behave: func(context.Context, stratus.Request, int) (*stratus.Response, error) {
		return fnError("Handled", "no"), nil
	}}
	h := newHarness(t, "", inv, newPolicies(
		"old", AsyncPolicy{MaxRetries: 5, MaxEventAge: time.Hour},
		"short", AsyncPolicy{MaxRetries: 5, MaxEventAge: time.Minute}))
	h.configure(func(c *QueueConfig) { c.Now = clock })

	old := h.enqueue("old", `{}`)
	offset.Store(int64(2 * time.Hour))
	h.run()
	d := h.waitDone(1, 10*time.Second)[0]
	if d.id != old || !errors.Is(d.err, ErrEventAgeExceeded) || d.attempts != 0 {
		t.Errorf("done = %+v, want %s failed with ErrEventAgeExceeded before any attempt", d, old)
	}
	if inv.callsFor(old) != 0 {
		t.Errorf("an event past its age was invoked")
	}

	// An event that fails, whose retry would fall past its age, is not retried.
	h.stopRun()
	offset.Store(0)
	h.configure(func(c *QueueConfig) {
		c.RetryBase, c.RetryMax = 3*time.Minute, 3*time.Minute // past the minute
	})
	short := h.enqueue("short", `{}`)
	h.run()
	d = h.waitDone(1, 10*time.Second)[0]
	var fe *FunctionError
	if d.id != short || !errors.Is(d.err, ErrEventAgeExceeded) || !errors.As(d.err, &fe) || d.attempts != 1 {
		t.Errorf("done = %+v (err %v), want a function error after 1 attempt, with ErrEventAgeExceeded", d, d.err)
	}
}

func TestDepth(t *testing.T) {
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now := base
	var mu sync.Mutex
	h := newHarness(t, "", &fakeInvoker{}, newPolicies("d", AsyncPolicy{}))
	h.configure(func(c *QueueConfig) { c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now } })
	for range 5 {
		h.enqueue("d", `{}`)
	}
	mu.Lock()
	now = base.Add(90 * time.Second)
	mu.Unlock()
	n, age, err := h.q.Depth(t.Context(), "d")
	if err != nil || n != 5 || age != 90*time.Second {
		t.Errorf("depth = %d, %s, %v; want 5, 1m30s", n, age, err)
	}
	if n, age, err := h.q.Depth(t.Context(), "other"); err != nil || n != 0 || age != 0 {
		t.Errorf("depth of a function without events = %d, %s, %v; want 0, 0", n, age, err)
	}
}

// TestDurableAcrossRestart enqueues events, lets some be processed, stops
// the server abruptly with invocations in flight, and checks that a new
// server on the same store processes every one that was not done.
func TestDurableAcrossRestart(t *testing.T) {
	const events, first, limit = 200, 50, 8
	dir := t.TempDir()
	blocked := make(chan struct{}, events)
	var okCalls atomic.Int64
	inv := &fakeInvoker{behave: func(ctx context.Context, _ stratus.Request, _ int) (*stratus.Response, error) {
		if okCalls.Add(1) <= first {
			return &stratus.Response{Body: []byte(`"ok"`)}, nil
		}
		blocked <- struct{}{}
		<-ctx.Done() // hangs until the server goes away
		return nil, ctx.Err()
	}}
	pol := newPolicies("durable", AsyncPolicy{MaxConcurrency: limit})
	h := newHarness(t, dir, inv, pol)
	h.configure(func(c *QueueConfig) { c.DrainTimeout = 100 * time.Millisecond })
	ids := make(map[string]bool)
	for i := range events {
		ids[h.enqueue("durable", fmt.Sprintf(`{"i":%d}`, i))] = true
	}
	h.run()
	doneBefore := make(map[string]bool)
	for _, d := range h.waitDone(first, 20*time.Second) {
		doneBefore[d.id] = true
	}
	for range limit {
		select {
		case <-blocked:
		case <-time.After(10 * time.Second):
			t.Fatal("in-flight invocations did not fill the concurrency cap")
		}
	}
	// OnDone runs just before an event's ack: wait until the acks of the
	// events done so far are stored, so that the crash below hits only
	// the invocations in flight.
	eventually.True(t, 10*time.Second, "the done events' acks", func() bool {
		n, _, err := h.q.Depth(t.Context(), "durable")
		return err == nil && n == events-len(doneBefore)
	})
	// Crash: the server and connection go away under the running queue;
	// no ack or nak reaches the store.
	h.bus.nc.Close()
	h.bus.srv.Shutdown()
	h.bus.srv.WaitForShutdown()
	h.stopRun()
	h.bus = nil

	inv2 := &fakeInvoker{}
	h2 := newHarness(t, dir, inv2, pol)
	n, _, err := h2.q.Depth(t.Context(), "durable")
	if err != nil || n != events-len(doneBefore) {
		t.Errorf("depth after restart = %d, %v; want %d", n, err, events-len(doneBefore))
	}
	h2.run()
	doneAfter := make(map[string]int)
	for _, d := range h2.waitDone(events-len(doneBefore), 20*time.Second) {
		if d.err != nil {
			t.Errorf("event %s failed after restart: %v", d.id, d.err)
		}
		doneAfter[d.id]++
	}
	eventually.True(t, 5*time.Second, "empty queue", func() bool {
		n, _, err := h2.q.Depth(t.Context(), "durable")
		return err == nil && n == 0
	})
	for len(h2.done) > 0 { // at least once: a late duplicate is counted below
		doneAfter[(<-h2.done).id]++
	}
	for id := range ids {
		if !doneBefore[id] && doneAfter[id] == 0 {
			t.Errorf("event %s lost", id)
		}
	}
	dups := 0
	for id, n := range doneAfter {
		if doneBefore[id] || n > 1 {
			dups++
		}
	}
	t.Logf("%d events done before the crash, %d after, %d duplicates", len(doneBefore), len(doneAfter), dups)
}

// TestGracefulStop stops Run with events fetched and in flight and checks
// they are all done after the next start, without waiting for AckWait.
func TestGracefulStop(t *testing.T) {
	const events = 40
	dir := t.TempDir()
	started := make(chan struct{}, events)
	inv := &fakeInvoker{behave: func(ctx context.Context, _ stratus.Request, _ int) (*stratus.Response, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	pol := newPolicies("g", AsyncPolicy{MaxConcurrency: 4})
	h := newHarness(t, dir, inv, pol)
	h.configure(func(c *QueueConfig) { c.DrainTimeout = 50 * time.Millisecond })
	for i := range events {
		h.enqueue("g", fmt.Sprintf(`{"i":%d}`, i))
	}
	h.run()
	for range 4 {
		<-started
	}
	h.close()

	h2 := newHarness(t, dir, &fakeInvoker{}, pol)
	h2.configure(func(c *QueueConfig) { c.AckWait = time.Minute }) // redelivery must not depend on it
	h2.run()
	seen := make(map[string]bool)
	for _, d := range h2.waitDone(events, 10*time.Second) {
		seen[d.id] = true
	}
	if len(seen) != events {
		t.Errorf("%d distinct events done after restart, want %d", len(seen), events)
	}
}

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{1, 0.999999, time.Second - time.Microsecond/2},
		{2, 0, time.Second},
		{3, 0.5, 3 * time.Second},
		{10, 0, 5 * time.Second},
		{10, 1, 10 * time.Second},
		{100, 0, 5 * time.Second},
	}
	for _, tt := range tests {
		got := retryDelay(time.Second, 10*time.Second, tt.attempt, tt.r)
		if d := got - tt.want; d > time.Microsecond || d < -time.Microsecond {
			t.Errorf("retryDelay(1s, 10s, %d, %v) = %s, want %s", tt.attempt, tt.r, got, tt.want)
		}
	}
}

// TestGracefulStopAfterShortPulls is TestGracefulStop with pull requests
// that expire about as soon as they are made, as a fetch's own deadline
// passes before JetStream's answer on a starved machine: no event JetStream
// sends meanwhile may be left delivered to nobody, to come back only after
// AckWait.
func TestGracefulStopAfterShortPulls(t *testing.T) {
	const events, limit = 40, 4
	dir := t.TempDir()
	started := make(chan struct{}, events)
	inv := &fakeInvoker{behave: func(ctx context.Context, _ stratus.Request, _ int) (*stratus.Response, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	pol := newPolicies("s", AsyncPolicy{MaxConcurrency: limit})
	h := newHarness(t, dir, inv, pol)
	h.configure(func(c *QueueConfig) { c.DrainTimeout, c.PollWait = 50*time.Millisecond, time.Millisecond })
	for i := range events {
		h.enqueue("s", fmt.Sprintf(`{"i":%d}`, i))
	}
	h.run()
	for range limit {
		<-started
	}
	h.close()

	h2 := newHarness(t, dir, &fakeInvoker{}, pol)
	h2.configure(func(c *QueueConfig) { c.AckWait = time.Minute }) // redelivery must not depend on it
	h2.run()
	seen := make(map[string]bool)
	for _, d := range h2.waitDone(events, 10*time.Second) {
		seen[d.id] = true
	}
	if len(seen) != events {
		t.Errorf("%d distinct events done after restart, want %d", len(seen), events)
	}
}

// TestEnqueueIDStoresOnce: the same request ID enqueued twice (a
// subscription redelivering its event) runs once.
func TestEnqueueIDStoresOnce(t *testing.T) {
	inv := &fakeInvoker{}
	h := newHarness(t, "", inv, newPolicies("hello", AsyncPolicy{}))
	for range 2 {
		if _, err := h.q.EnqueueID(t.Context(), "hello", "sub-1/42/1", []byte(`{"n":1}`)); err != nil {
			t.Fatalf("EnqueueID: %v", err)
		}
	}
	if n, _, err := h.q.Depth(t.Context(), "hello"); err != nil || n != 1 {
		t.Fatalf("depth %d (%v) after the same ID twice, want 1", n, err)
	}
	h.run()
	h.waitDone(1, 10*time.Second)
	if reqs := inv.requests(); len(reqs) != 1 || reqs[0].RequestID != "sub-1/42/1" {
		t.Errorf("invocations %+v, want one with the given request ID", reqs)
	}
	if _, err := h.q.EnqueueID(t.Context(), "hello", "", []byte(`{}`)); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("empty request ID: %v, want ErrInvalid", err)
	}
}

// An event for NAME:$LATEST, as Lambda's Invoke with that qualifier
// sends, is an event for NAME: queued under it and invoked on the head.
func TestEnqueueLatestIsTheHead(t *testing.T) {
	inv := &fakeInvoker{}
	h := newHarness(t, "", inv, newPolicies("hello", AsyncPolicy{}))
	id, err := h.q.Enqueue(t.Context(), "hello:$LATEST", []byte(`{"n":1}`))
	if err != nil {
		t.Fatalf("enqueue for hello:$LATEST: %v", err)
	}
	if n, _, err := h.q.Depth(t.Context(), "hello"); err != nil || n != 1 {
		t.Errorf("depth of hello = %d, %v; want the event", n, err)
	}
	h.run()
	if d := h.waitDone(1, 10*time.Second)[0]; d.fn != "hello" || d.id != id || d.err != nil {
		t.Errorf("done = %+v, want hello %s, no error", d, id)
	}
}
