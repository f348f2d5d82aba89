package events

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// TestQueueDepths: Depths tells for every function what Depth tells for
// one, and forgets a function once its events are done.
func TestQueueDepths(t *testing.T) {
	var clock shiftedClock
	h := newHarness(t, "", &fakeInvoker{}, newPolicies("f", AsyncPolicy{}, "g", AsyncPolicy{}, "idle", AsyncPolicy{}))
	h.configure(clock.configure)
	if got, err := h.q.Depths(t.Context()); err != nil || len(got) != 0 {
		t.Errorf("depths of an empty queue = %v, %v; want none", got, err)
	}
	h.enqueue("f", `{"n":1}`)
	h.enqueue("f", `{"n":2}`)
	h.enqueue("g", `{"n":3}`)
	clock.set(time.Hour) // the events wait an hour
	got, err := h.q.Depths(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for fn, n := range map[string]int{"f": 2, "g": 1} {
		d := got[fn]
		pending, oldest, err := h.q.Depth(t.Context(), fn)
		if err != nil {
			t.Fatal(err)
		}
		if d.Pending != n || pending != n || d.Oldest < time.Hour || d.Oldest > time.Hour+time.Minute ||
			oldest-d.Oldest > time.Minute || d.Oldest-oldest > time.Minute {
			t.Errorf("depth of %s = %+v, Depth %d, %v; want %d pending about 1h old", fn, d, pending, oldest, n)
		}
	}
	if _, ok := got["idle"]; ok || len(got) != 2 {
		t.Errorf("depths %v: want f and g only", got)
	}

	h.run()
	eventually.True(t, 10*time.Second, "an empty queue", func() bool {
		got, err := h.q.Depths(t.Context())
		return err == nil && len(got) == 0
	})
}

// TestSubscriptionDepths: what a subscription has not yet delivered is
// counted from when its consumer exists, whether the events wait in the
// stream or were fetched and are being delivered, with the age of the
// oldest; it drains to 0 once they are delivered.
func TestSubscriptionDepths(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("orders")
	h.topic("audit")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the harness stops Run
	// The enqueue of an event of audit is slow.
	h.q.hold = func(fn string) {
		if fn == "other" {
			<-release
		}
	}
	h.run()
	orders := h.subscribe(stratus.Subscription{Topic: "orders", Function: "fn"})
	audit := h.subscribe(stratus.Subscription{Topic: "audit", Function: "other"})
	eventually.True(t, 10*time.Second, "both consumers", func() bool { return len(h.consumerNames()) == 2 })
	h.stopRun() // orders' events wait in the stream

	depths := func() map[string]SubscriptionDepth {
		t.Helper()
		d, err := h.tp.SubscriptionDepths(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if diff := cmp.Diff(map[string]SubscriptionDepth{orders.ID: {}, audit.ID: {}}, depths()); diff != "" {
		t.Errorf("depths before any event (-want +got):\n%s", diff)
	}

	before := time.Now()
	h.publish("orders", ev("o1", "order.created", "/shop", ""))
	after := time.Now()
	h.publish("audit", ev("a1", "audit", "/shop", ""), ev("a2", "audit", "/shop", ""))
	h.publish("orders", ev("o2", "order.created", "/shop", ""), ev("o3", "order.paid", "/shop", ""))
	// The first event of orders is the oldest, whatever came after it. A
	// consumer counts a stored event as pending a moment after the publish
	// is acknowledged (the stream signals its consumers on its own
	// goroutine), so the figures are read until both are counted.
	var asked, done time.Time
	var d map[string]SubscriptionDepth
	eventually.True(t, 10*time.Second, "the events counted", func() bool {
		asked = time.Now()
		d = depths()
		done = time.Now()
		return d[orders.ID].Pending == 3 && d[audit.ID].Pending == 2
	})
	if o := d[orders.ID]; o.Pending != 3 || o.Oldest < asked.Sub(after) || o.Oldest > done.Sub(before) {
		t.Errorf("orders' depth = %+v, want 3 pending, the oldest stored between %v and %v before", o, asked.Sub(after), done.Sub(before))
	}
	if a := d[audit.ID]; a.Pending != 2 || a.Oldest <= 0 {
		t.Errorf("audit's depth = %+v, want 2 pending", a)
	}

	h.tp = h.newTopics()
	h.run()
	eventually.True(t, 10*time.Second, "orders delivered", func() bool { return len(h.q.delivered("fn")) == 3 })
	eventually.True(t, 10*time.Second, "orders drained to 0", func() bool {
		return depths()[orders.ID] == SubscriptionDepth{}
	})
	// audit's first event is taken and held by its slow enqueue: still
	// pending (fetched, not settled), and still the oldest.
	if a := depths()[audit.ID]; a.Pending != 2 || a.Oldest <= 0 {
		t.Errorf("audit's depth while its first enqueue runs = %+v, want 2 pending", a)
	}
	free()
	eventually.True(t, 10*time.Second, "audit drained to 0", func() bool {
		return depths()[audit.ID] == SubscriptionDepth{}
	})

	// A deleted subscription is gone from the figures.
	if err := h.tp.Unsubscribe(t.Context(), orders.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := depths()[orders.ID]; ok {
		t.Error("a deleted subscription still has a depth")
	}
}

// TestDestinationInStatus: once a done invocation's outcome went to its
// destination, a last status says where and whether it got there; an
// invocation without a destination has none.
func TestDestinationInStatus(t *testing.T) {
	inv := &fakeInvoker{behave: func(_ context.Context, req stratus.Request, _ int) (*stratus.Response, error) {
		if string(req.Event) == `"fail"` {
			return fnError("Boom", "always"), nil
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	h := newHarness(t, "", inv, newPolicies("f", AsyncPolicy{MaxRetries: 0}, "dlq", AsyncPolicy{}))
	dests := &Destinations{
		Config: func(fn string) (stratus.FunctionConfig, bool) {
			if fn == "f" {
				return stratus.FunctionConfig{OnFailure: "function:dlq", OnSuccess: "topic:done"}, true
			}
			return stratus.FunctionConfig{}, true
		},
		Region: "local", Log: testLog(), // no topics: topic:done fails
	}
	h.configure(func(c *QueueConfig) { c.OnDone = dests.Done })
	dests.Enqueue = h.q.Enqueue
	failed := h.enqueue("f", `"fail"`)
	succeeded := h.enqueue("f", `"ok"`)
	plain := h.enqueue("dlq", `"direct"`)
	h.run()

	last := func(id string) Status {
		h.sink.mu.Lock()
		defer h.sink.mu.Unlock()
		sts := h.sink.byID[id]
		if len(sts) == 0 {
			return Status{}
		}
		return sts[len(sts)-1]
	}
	for id, want := range map[string]struct{ state, dest, destState string }{
		failed:    {StateFailed, "function:dlq", DestinationDelivered},
		succeeded: {StateSucceeded, "topic:done", DestinationFailed},
	} {
		eventually.True(t, 10*time.Second, "the destination of "+id, func() bool { return last(id).Destination != "" })
		st := last(id)
		got := fmt.Sprintf("%s %s %s", st.State, st.Destination, st.DestinationState)
		if w := fmt.Sprintf("%s %s %s", want.state, want.dest, want.destState); got != w {
			t.Errorf("last status of %s: %q, want %q", id, got, w)
		}
		if id == failed && (st.ErrorType != "Boom" || st.Attempt != 1) {
			t.Errorf("the routed status lost the outcome: %+v", st)
		}
	}
	eventually.True(t, 10*time.Second, "the direct invocation done", func() bool { return last(plain).State == StateSucceeded })
	h.sink.mu.Lock()
	for _, st := range h.sink.byID[plain] {
		if st.Destination != "" || st.DestinationState != "" {
			t.Errorf("status of an invocation without a destination: %+v", st)
		}
	}
	h.sink.mu.Unlock()
	// Statuses convert to the stored kind field for field.
	_ = stratus.AsyncStatus(last(failed))
}

// BenchmarkQueueDepths50 reads the queues of 50 functions, each with
// events waiting: Depths (what GET /v1/functions does) against a Depth
// per function.
func BenchmarkQueueDepths50(b *testing.B) {
	pol := newPolicies()
	h := &harness{t: nil, inv: &fakeInvoker{}, pol: pol, sink: &statusSink{}, done: make(chan doneRec, 1)}
	h.bus = func() *Bus {
		bus, err := OpenBus(b.Context(), BusConfig{StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		return bus
	}()
	defer h.bus.Close()
	h.q = h.newQueue(h.bus)
	var fns []string
	for i := range 50 {
		fn := fmt.Sprintf("fn%02d", i)
		pol.set(fn, AsyncPolicy{})
		fns = append(fns, fn)
		for range 3 {
			if _, err := h.q.Enqueue(b.Context(), fn, []byte(`{}`)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Depths", func(b *testing.B) {
		for b.Loop() {
			d, err := h.q.Depths(b.Context())
			if err != nil || len(d) != 50 {
				b.Fatalf("depths %d, %v", len(d), err)
			}
		}
	})
	b.Run("DepthEach", func(b *testing.B) {
		for b.Loop() {
			for _, fn := range fns {
				if n, _, err := h.q.Depth(b.Context(), fn); err != nil || n != 3 {
					b.Fatalf("depth of %s %d, %v", fn, n, err)
				}
			}
		}
	})
}

// BenchmarkSubscriptionDepths50 reads 50 subscriptions, each with events
// waiting (Run stopped), as GET /v1/subscriptions does.
func BenchmarkSubscriptionDepths50(b *testing.B) {
	st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "stratus.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	bus, err := OpenBus(b.Context(), BusConfig{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	tp := NewTopics(TopicsConfig{Bus: bus, Store: st, Queue: &topicQueue{}, FunctionExists: func(string) bool { return true }})
	for i := range 50 {
		name := fmt.Sprintf("t%02d", i)
		if _, err := tp.CreateTopic(b.Context(), name); err != nil {
			b.Fatal(err)
		}
		sub, err := tp.Subscribe(b.Context(), stratus.Subscription{Topic: name, Function: "fn"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tp.consumer(b.Context(), *sub); err != nil {
			b.Fatal(err)
		}
		if err := tp.Publish(b.Context(), name, []cloudevent.Event{ev("1", "x", "/b", ""), ev("2", "x", "/b", "")}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		d, err := tp.SubscriptionDepths(b.Context())
		if err != nil || len(d) != 50 {
			b.Fatalf("depths %d, %v", len(d), err)
		}
	}
}
