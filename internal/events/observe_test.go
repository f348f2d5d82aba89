package events

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/trace"
)

// A caller's trace context, as the gateway extracts it from a request.
const (
	callerTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID      = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTraceID + "-" + callerSpanID + "-01"
)

func callerContext(t *testing.T) context.Context {
	t.Helper()
	h := http.Header{}
	h.Set("traceparent", callerTraceparent)
	ctx := trace.Extract(t.Context(), h)
	if !oteltrace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("traceparent not extracted")
	}
	return ctx
}

// shiftedClock is time.Now moved by a shift the test sets.
type shiftedClock struct{ shift atomic.Int64 }

func (c *shiftedClock) now() time.Time           { return time.Now().Add(time.Duration(c.shift.Load())) }
func (c *shiftedClock) set(d time.Duration)      { c.shift.Store(int64(d)) }
func (c *shiftedClock) configure(q *QueueConfig) { q.Now = c.now }

// TestTriggerSurvivesRetryAndRestart: the trigger given to EnqueueWith
// reaches every attempt: a retry, and an event a new server on the same
// store takes; the stored retry keeps the trigger and the trace context.
// An event stored without a trigger (before triggers were kept, or by a
// plain NATS client) is an async invocation.
func TestTriggerSurvivesRetryAndRestart(t *testing.T) {
	dir := t.TempDir()
	calls := make(chan stratus.Request, 100)
	var failID atomic.Value
	failID.Store("")
	inv := &fakeInvoker{behave: func(_ context.Context, req stratus.Request, call int) (*stratus.Response, error) {
		calls <- req
		if req.RequestID == failID.Load().(string) && call == 1 {
			return fnError("Boom", "first attempt"), nil
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	next := func(what string) stratus.Request {
		t.Helper()
		select {
		case req := <-calls:
			return req
		case <-time.After(15 * time.Second):
			t.Fatalf("no invocation: %s", what)
		}
		return stratus.Request{}
	}
	pol := newPolicies("f", AsyncPolicy{MaxRetries: 2})
	h := newHarness(t, dir, inv, pol)
	h.configure(func(c *QueueConfig) { c.RetryBase, c.RetryMax = time.Hour, time.Hour }) // the retry stays stored

	schedID, err := h.q.EnqueueWith(callerContext(t), "f", []byte(`{"n":1}`), EnqueueOptions{Trigger: stratus.TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	failID.Store(schedID)
	topicID, err := h.q.EnqueueWith(t.Context(), "f", []byte(`{"n":2}`), EnqueueOptions{ID: "topic-event-1", Trigger: stratus.TriggerTopic})
	if err != nil || topicID != "topic-event-1" {
		t.Fatalf("enqueue with an ID = %q, %v", topicID, err)
	}
	asyncID := h.enqueue("f", `{"n":3}`)
	// An event as stored before triggers were kept: no trigger header.
	legacy := nats.NewMsg(AsyncSubject("f"))
	legacy.Data = []byte(`{"n":4}`)
	legacy.Header.Set(hdrRequestID, "legacy-1")
	legacy.Header.Set(hdrEnqueuedAt, time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := h.bus.js.PublishMsg(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.EnqueueWith(t.Context(), "f", []byte(`{}`), EnqueueOptions{Trigger: stratus.TriggerHTTP}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("enqueue with trigger http: %v, want ErrInvalid", err)
	}

	h.run()
	want := map[string]string{
		schedID: stratus.TriggerSchedule, topicID: stratus.TriggerTopic,
		asyncID: stratus.TriggerAsync, "legacy-1": stratus.TriggerAsync,
	}
	got := make(map[string]string)
	for range 4 {
		req := next("first attempts")
		got[req.RequestID] = req.Trigger
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("triggers of the first attempts (-want +got):\n%s", diff)
	}
	h.waitDone(3, 10*time.Second) // all but the failed one
	eventually.True(t, 10*time.Second, "the retry stored", func() bool {
		n, _, err := h.q.Depth(t.Context(), "f")
		return err == nil && n == 1
	})
	h.stopRun()
	// Stored while no server runs, taken by the next one.
	stoppedID, err := h.q.EnqueueWith(t.Context(), "f", []byte(`{"n":5}`), EnqueueOptions{Trigger: stratus.TriggerTopic})
	if err != nil {
		t.Fatal(err)
	}
	h.close()

	// A new server on the same store, with fast retries.
	h2 := newHarness(t, dir, inv, pol)
	s, err := h2.q.getStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	retry, err := s.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject(AsyncSubject("f")))
	if err != nil {
		t.Fatal(err)
	}
	if h := http.Header(retry.Header); retry.Header.Get(hdrRequestID) != schedID || retry.Header.Get(hdrTrigger) != stratus.TriggerSchedule ||
		retry.Header.Get(hdrAttempts) != "1" || !strings.Contains(h.Get("traceparent"), callerTraceID) {
		t.Errorf("stored retry's headers after a restart: %v", retry.Header)
	}
	h2.run()
	if req := next("the event stored while stopped"); req.RequestID != stoppedID || req.Trigger != stratus.TriggerTopic {
		t.Errorf("after restart: request %s trigger %q, want %s %q", req.RequestID, req.Trigger, stoppedID, stratus.TriggerTopic)
	}
	// A retry within one server.
	const retriedID = "retried-1"
	failID.Store(retriedID) // before the worker can take it
	if _, err := h2.q.EnqueueWith(t.Context(), "f", []byte(`{"n":6}`), EnqueueOptions{ID: retriedID, Trigger: stratus.TriggerSchedule}); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ {
		if req := next(fmt.Sprint("the retried event, attempt ", n)); req.RequestID != retriedID || req.Trigger != stratus.TriggerSchedule {
			t.Errorf("attempt %d: request %s trigger %q, want %s %q", n, req.RequestID, req.Trigger, retriedID, stratus.TriggerSchedule)
		}
	}
}

// spansNamed returns the ended spans named name.
func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := make(map[string]string)
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// TestTraceContextReachesInvoker: the trace context of Enqueue's ctx
// travels with the event; each attempt runs in a consumer span that is a
// child of the enqueue's producer span, and the Invoker's ctx carries it.
func TestTraceContextReachesInvoker(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	var mu sync.Mutex
	seen := make(map[string][]oteltrace.SpanContext) // by request ID, per attempt
	inv := &fakeInvoker{behave: func(ctx context.Context, req stratus.Request, call int) (*stratus.Response, error) {
		mu.Lock()
		seen[req.RequestID] = append(seen[req.RequestID], oteltrace.SpanContextFromContext(ctx))
		mu.Unlock()
		if call == 1 && strings.Contains(string(req.Event), "fail") {
			return fnError("Boom", "first attempt"), nil
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	h := newHarness(t, "", inv, newPolicies("f", AsyncPolicy{MaxRetries: 1}))
	h.configure(func(c *QueueConfig) { c.Tracer = tp.Tracer("test") })

	traced, err := h.q.Enqueue(callerContext(t), "f", []byte(`{"fail":true}`))
	if err != nil {
		t.Fatal(err)
	}
	untraced := h.enqueue("f", `{}`)
	h.run()
	h.waitDone(2, 10*time.Second)
	eventually.True(t, 10*time.Second, "the attempts' spans", func() bool { return len(spansNamed(rec, "async f")) == 3 })

	enq := spansNamed(rec, "enqueue f")
	if len(enq) != 1 {
		t.Fatalf("%d enqueue spans, want 1 (an enqueue outside a trace makes none)", len(enq))
	}
	producer := enq[0]
	if producer.SpanKind() != oteltrace.SpanKindProducer || producer.Parent().SpanID().String() != callerSpanID ||
		producer.SpanContext().TraceID().String() != callerTraceID {
		t.Errorf("enqueue span: kind %v, parent %v, trace %v; want a producer, child of the caller",
			producer.SpanKind(), producer.Parent().SpanID(), producer.SpanContext().TraceID())
	}
	mu.Lock()
	defer mu.Unlock()
	var attempts []string
	for _, s := range spansNamed(rec, "async f") {
		a := attrs(s)
		id := a[trace.AttrInvocationID]
		if s.SpanKind() != oteltrace.SpanKindConsumer || a[trace.AttrTrigger] != "pubsub" || a[attrTrigger] != stratus.TriggerAsync {
			t.Errorf("attempt span of %s: kind %v, attributes %v", id, s.SpanKind(), a)
		}
		n := 0
		fmt.Sscan(a[attrAttempt], &n)
		if n < 1 || n > len(seen[id]) {
			t.Errorf("attempt span of %s: attempt %q, the invoker saw %d", id, a[attrAttempt], len(seen[id]))
			continue
		}
		// The invocation's ctx carries exactly this span.
		if got := seen[id][n-1]; got.SpanID() != s.SpanContext().SpanID() || got.TraceID() != s.SpanContext().TraceID() {
			t.Errorf("invoker ctx of %s attempt %d: span %v, want the attempt's %v", id, n, got.SpanID(), s.SpanContext().SpanID())
		}
		switch id {
		case traced:
			if s.Parent().SpanID() != producer.SpanContext().SpanID() || s.SpanContext().TraceID().String() != callerTraceID {
				t.Errorf("attempt %d of the traced event: parent %v in trace %v, want the enqueue span %v",
					n, s.Parent().SpanID(), s.SpanContext().TraceID(), producer.SpanContext().SpanID())
			}
		case untraced:
			if s.Parent().IsValid() {
				t.Errorf("attempt of an event enqueued outside a trace has parent %v, want a new trace", s.Parent())
			}
		}
		attempts = append(attempts, fmt.Sprintf("%s/%d", map[string]string{traced: "traced", untraced: "untraced"}[id], n))
	}
	slices.Sort(attempts)
	if diff := cmp.Diff([]string{"traced/1", "traced/2", "untraced/1"}, attempts); diff != "" {
		t.Errorf("attempt spans (-want +got):\n%s", diff)
	}
}

// TestTraceContextWithoutTracer: with no Tracer the caller's trace
// context still reaches the Invoker.
func TestTraceContextWithoutTracer(t *testing.T) {
	got := make(chan oteltrace.SpanContext, 1)
	inv := &fakeInvoker{behave: func(ctx context.Context, _ stratus.Request, _ int) (*stratus.Response, error) {
		got <- oteltrace.SpanContextFromContext(ctx)
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	h := newHarness(t, "", inv, newPolicies("f", AsyncPolicy{}))
	if _, err := h.q.Enqueue(callerContext(t), "f", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	h.run()
	select {
	case sc := <-got:
		if sc.TraceID().String() != callerTraceID || sc.SpanID().String() != callerSpanID {
			t.Errorf("invoker ctx span context %v/%v, want the caller's %s/%s", sc.TraceID(), sc.SpanID(), callerTraceID, callerSpanID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no invocation")
	}
}

// TestQueueStatsCountsASequence: three events of f, one failing on every
// attempt (two retries) and going to f's on-failure destination, a
// function; one event of g, whose on-success destination is missing.
func TestQueueStatsCountsASequence(t *testing.T) {
	var clock shiftedClock
	var failID atomic.Value
	failID.Store("")
	inv := &fakeInvoker{behave: func(_ context.Context, req stratus.Request, _ int) (*stratus.Response, error) {
		if req.RequestID == failID.Load().(string) {
			return fnError("Boom", "always"), nil
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	h := newHarness(t, "", inv, newPolicies("f", AsyncPolicy{MaxRetries: 2}, "g", AsyncPolicy{}, "sink", AsyncPolicy{}))
	dests := &Destinations{
		Config: func(fn string) (stratus.FunctionConfig, bool) {
			switch fn {
			case "f":
				return stratus.FunctionConfig{OnFailure: "function:sink"}, true
			case "g":
				return stratus.FunctionConfig{OnSuccess: "function:gone"}, true
			}
			return stratus.FunctionConfig{}, true
		},
		Region: "local", Log: testLog(),
	}
	h.configure(func(c *QueueConfig) {
		clock.configure(c)
		record := c.OnDone
		c.OnDone = func(ctx context.Context, fn, id string, event []byte, res *stratus.Response, attempts int, err error) Routing {
			r := dests.Done(ctx, fn, id, event, res, attempts, err)
			record(ctx, fn, id, event, res, attempts, err)
			return r
		}
	})
	dests.Enqueue = h.q.Enqueue

	if diff := cmp.Diff(map[string]QueueStats{}, h.q.Stats()); diff != "" {
		t.Errorf("stats of an empty queue (-want +got):\n%s", diff)
	}
	h.enqueue("f", `{"n":1}`)
	failID.Store(h.enqueue("f", `{"n":2}`))
	h.enqueue("f", `{"n":3}`)
	h.enqueue("g", `{"n":4}`)
	clock.set(time.Hour) // the events wait an hour
	var before map[string]QueueStats
	eventually.True(t, 5*time.Second, "the depths read again", func() bool { // at most once a second
		before = h.q.Stats()
		return before["f"].Depth > 0
	})
	for fn, depth := range map[string]int64{"f": 3, "g": 1} {
		s := before[fn]
		if s.Depth != depth || s.OldestAge < time.Hour || s.OldestAge > time.Hour+time.Minute {
			t.Errorf("stats of %s before any attempt = %+v, want depth %d, oldest about 1h", fn, s, depth)
		}
	}
	bs := h.bus.Stats()
	if !bs.Enabled || !bs.Healthy || bs.Streams[AsyncStream].Messages != 4 || bs.Streams[AsyncStream].Bytes == 0 ||
		bs.StoreUsed <= 0 || bs.StoreMax <= 0 || bs.StoreReserved <= 0 {
		t.Errorf("bus stats with 4 events = %+v", bs)
	}

	h.run()
	done := h.waitDone(5, 15*time.Second) // 4 events and the failure record
	var sinkReq *stratus.Request
	for _, r := range inv.requests() {
		if strings.Contains(string(r.Event), "RetriesExhausted") {
			sinkReq = &r
		}
	}
	if sinkReq == nil || sinkReq.Trigger != stratus.TriggerAsync {
		t.Errorf("destination invocation %+v, want one with trigger async", sinkReq)
	}
	eventually.True(t, 10*time.Second, "empty queue in the stats", func() bool {
		s := h.q.Stats()
		return s["f"].Depth == 0 && s["g"].Depth == 0 && s["sink"].Depth == 0
	})
	want := map[string]QueueStats{
		"f":    {Retries: 2, Expired: 1, DeadLettered: 1},
		"g":    {DestinationFailures: 1},
		"sink": {},
	}
	if diff := cmp.Diff(want, h.q.Stats()); diff != "" {
		t.Errorf("stats after %d done events (-want +got):\n%s", len(done), diff)
	}
	eventually.True(t, 5*time.Second, "an empty stream in the bus stats", func() bool {
		return h.bus.Stats().Streams[AsyncStream].Messages == 0
	})
}

// TestTopicsCarryTraceContext: a topic event published within a trace
// reaches a function subscriber's enqueue and a URL subscriber's request
// in that trace.
func TestTopicsCarryTraceContext(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("orders")
	posted := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posted <- r.Header.Get("traceparent")
	}))
	defer srv.Close()
	h.run()
	h.subscribe(stratus.Subscription{Topic: "orders", Function: "fn"})
	h.subscribe(stratus.Subscription{Topic: "orders", URL: srv.URL})
	if err := h.tp.Publish(callerContext(t), "orders", []cloudevent.Event{ev("1", "order.created", "/shop", "")}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the function's enqueue", func() bool { return len(h.q.delivered("fn")) == 1 })
	h.q.mu.Lock()
	call := h.q.calls[0]
	h.q.mu.Unlock()
	if call.traceID != callerTraceID {
		t.Errorf("function subscriber's enqueue in trace %q, want %s", call.traceID, callerTraceID)
	}
	select {
	case tp := <-posted:
		if !strings.Contains(tp, callerTraceID) {
			t.Errorf("URL subscriber got traceparent %q, want trace %s", tp, callerTraceID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no POST to the URL subscriber")
	}
}

// TestFaaSTrigger maps triggers to OpenTelemetry's faas.trigger values.
func TestFaaSTrigger(t *testing.T) {
	for trigger, want := range map[string]string{
		stratus.TriggerAsync: "pubsub", stratus.TriggerTopic: "pubsub", stratus.TriggerSchedule: "timer",
	} {
		if got := faasTrigger(trigger); got != want {
			t.Errorf("faasTrigger(%q) = %q, want %q", trigger, got, want)
		}
	}
}

// TestTraceHeaders: trace context headers are found whatever the case a
// NATS client gave their names.
func TestTraceHeaders(t *testing.T) {
	got := traceHeaders(nats.Header{
		"traceparent": {callerTraceparent}, "TRACESTATE": {"k=v"}, "x-amzn-trace-id": {"Root=1-x"},
		hdrRequestID: {"id"}, "Other": {"x"},
	})
	want := http.Header{"Traceparent": {callerTraceparent}, "Tracestate": {"k=v"}, "X-Amzn-Trace-Id": {"Root=1-x"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trace headers (-want +got):\n%s", diff)
	}
	ctx := trace.Extract(t.Context(), got)
	if sc := oteltrace.SpanContextFromContext(ctx); sc.TraceID().String() != callerTraceID {
		t.Errorf("extracted trace %v, want %s", sc.TraceID(), callerTraceID)
	}
}

// TestScheduleFiringStartsATrace: each firing enqueues within a trace of
// its own, rooted at its "schedule <name>" span.
func TestScheduleFiringStartsATrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	t0 := utcTime("2025-01-06T09:58:00Z")
	r := newSchedRig(t, openScheduleStore(t), t0, func(c *SchedulerConfig) { c.Tracer = tp.Tracer("test") }).start()
	r.create(ScheduleSpec{Name: "tick", Function: "fn", Rate: "1 minute"})
	r.advanceTo(t0.Add(90 * time.Second))
	r.wantFired("tick@2025-01-06T09:58:00Z", "tick@2025-01-06T09:59:00Z")

	r.enq.mu.Lock()
	calls := slices.Clone(r.enq.attempts)
	r.enq.mu.Unlock()
	spans := spansNamed(rec, "schedule tick")
	if len(spans) != len(calls) {
		t.Fatalf("%d firing spans for %d firings", len(spans), len(calls))
	}
	for i, c := range calls {
		s := spans[i]
		a := attrs(s)
		if c.trigger != stratus.TriggerSchedule || c.traceID == "" || c.traceID != s.SpanContext().TraceID().String() ||
			s.Parent().IsValid() || a[trace.AttrTrigger] != "timer" || a[trace.AttrFaaSName] != "fn" {
			t.Errorf("firing %d: trigger %q in trace %q; span %v (parent %v) %v", i, c.trigger, c.traceID,
				s.SpanContext().TraceID(), s.Parent().SpanID(), a)
		}
	}
	if calls[0].traceID == calls[1].traceID {
		t.Error("two firings share a trace")
	}
}
