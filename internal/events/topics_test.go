package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// topicQueue records the async invocations Topics starts; fail, when set,
// decides each call's error; hold, when set, is called first (without
// the lock), and may block.
type topicQueue struct {
	mu    sync.Mutex
	calls []topicCall
	fail  func(fn string, n int) error
	hold  func(fn string)
}

type topicCall struct {
	fn      string
	event   string
	traceID string // of ctx's span context, "" when none
}

func (q *topicQueue) EnqueueWith(ctx context.Context, fn string, event []byte, opts EnqueueOptions) (string, error) {
	if q.hold != nil {
		q.hold(fn)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if opts.Trigger != stratus.TriggerTopic || opts.ID == "" {
		return "", fmt.Errorf("enqueue of a topic event with %+v, want an ID and trigger %q: %w", opts, stratus.TriggerTopic, stratus.ErrInvalid)
	}
	if q.fail != nil {
		if err := q.fail(fn, len(q.calls)); err != nil {
			q.calls = append(q.calls, topicCall{fn: fn, event: "error:" + err.Error()})
			return "", err
		}
	}
	var traceID string
	if sc := oteltrace.SpanContextFromContext(ctx); sc.IsValid() {
		traceID = sc.TraceID().String()
	}
	q.calls = append(q.calls, topicCall{fn: fn, event: string(event), traceID: traceID})
	return opts.ID, nil
}

// delivered returns the events enqueued for fn successfully.
func (q *topicQueue) delivered(fn string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, c := range q.calls {
		if c.fn == fn && !strings.HasPrefix(c.event, "error:") {
			out = append(out, c.event)
		}
	}
	return out
}

type topicHarness struct {
	t     *testing.T
	dir   string
	bus   *Bus
	st    *store.Store
	q     *topicQueue
	fns   map[string]bool
	tp    *Topics
	stop  context.CancelFunc
	ended chan error
}

func newTopicHarness(t *testing.T) *topicHarness {
	t.Helper()
	h := &topicHarness{t: t, dir: t.TempDir(), q: &topicQueue{}, fns: map[string]bool{"fn": true, "other": true}}
	st, err := store.Open(t.Context(), filepath.Join(h.dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	h.st = st
	h.bus = openTestBus(t, BusConfig{StoreDir: filepath.Join(h.dir, "nats")})
	h.tp = h.newTopics()
	t.Cleanup(func() {
		h.stopRun()
		if err := h.bus.Close(); err != nil {
			t.Errorf("close bus: %v", err)
		}
		st.Close()
	})
	return h
}

// newTopics returns fast Topics on h's bus and store; change, if any,
// adjusts their configuration first.
func (h *topicHarness) newTopics(change ...func(*TopicsConfig)) *Topics {
	cfg := TopicsConfig{
		Bus: h.bus, Store: h.st, Queue: h.q, FunctionExists: func(fn string) bool { return h.fns[fn] }, Log: testLog(),
		BatchWait:  200 * time.Millisecond,
		RetryBase:  10 * time.Millisecond,
		RetryMax:   50 * time.Millisecond,
		URLTimeout: 2 * time.Second,
		AckWait:    2 * time.Second,
	}
	for _, c := range change {
		c(&cfg)
	}
	return NewTopics(cfg)
}

func (h *topicHarness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.ended = cancel, make(chan error, 1)
	tp := h.tp
	go func() { h.ended <- tp.Run(ctx) }()
}

func (h *topicHarness) stopRun() {
	h.t.Helper()
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case err := <-h.ended:
		if err != nil {
			h.t.Errorf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Fatal("Run did not return within 15s of its ctx ending")
	}
	h.stop = nil
}

func (h *topicHarness) topic(name string) {
	h.t.Helper()
	if _, err := h.tp.CreateTopic(h.t.Context(), name); err != nil {
		h.t.Fatalf("create topic %s: %v", name, err)
	}
}

func (h *topicHarness) subscribe(sub stratus.Subscription) *stratus.Subscription {
	h.t.Helper()
	s, err := h.tp.Subscribe(h.t.Context(), sub)
	if err != nil {
		h.t.Fatalf("subscribe %+v: %v", sub, err)
	}
	return s
}

func (h *topicHarness) publish(topic string, events ...cloudevent.Event) {
	h.t.Helper()
	if err := h.tp.Publish(h.t.Context(), topic, events); err != nil {
		h.t.Fatalf("publish to %s: %v", topic, err)
	}
}

// consumerNames lists the durable consumers of the topic stream.
func (h *topicHarness) consumerNames() []string {
	h.t.Helper()
	s, err := h.tp.getStream(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	l := s.ConsumerNames(h.t.Context())
	for n := range l.Name() {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func ev(id, typ, source, data string) cloudevent.Event {
	e := cloudevent.Event{SpecVersion: "1.0", ID: id, Type: typ, Source: source}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

// ids reads the CloudEvent ids of delivered function events (single
// events or lists).
func ids(t *testing.T, events []string) [][]string {
	t.Helper()
	var out [][]string
	for _, s := range events {
		var one struct{ ID string }
		if strings.HasPrefix(s, "[") {
			var list []struct{ ID string }
			if err := json.Unmarshal([]byte(s), &list); err != nil {
				t.Fatalf("decode %s: %v", s, err)
			}
			var b []string
			for _, e := range list {
				b = append(b, e.ID)
			}
			out = append(out, b)
			continue
		}
		if err := json.Unmarshal([]byte(s), &one); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
		out = append(out, []string{one.ID})
	}
	return out
}

func TestTopicDeliversEventsToFunction(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("orders")
	h.run()
	sub := h.subscribe(stratus.Subscription{Topic: "orders", Function: "fn"})
	if !strings.HasPrefix(sub.ID, "sub-") || sub.Batch != 1 || sub.CreatedAt.IsZero() {
		t.Errorf("subscription = %+v", sub)
	}
	h.publish("orders", ev("1", "order.created", "/shop", `{"n":1}`))
	h.publish("orders", ev("2", "order.created", "/shop", `{"n":2}`), ev("3", "order.paid", "/shop", ""))
	eventually.True(t, 10*time.Second, "3 invocations", func() bool { return len(h.q.delivered("fn")) == 3 })
	got := h.q.delivered("fn")
	e, err := cloudevent.FromJSON([]byte(got[0]), 0)
	if err != nil {
		t.Fatalf("delivered event %s: %v", got[0], err)
	}
	if e.ID != "1" || e.Type != "order.created" || e.Source != "/shop" || string(e.Data) != `{"n":1}` {
		t.Errorf("delivered %+v", e)
	}
	if diff := cmp.Diff([][]string{{"1"}, {"2"}, {"3"}}, ids(t, got)); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	// Publishing the same event again (a client's retry) stores it once.
	h.publish("orders", ev("1", "order.created", "/shop", `{"n":1}`), ev("4", "order.created", "/shop", ""))
	// The delivery is counted once its enqueue returned, just after the
	// queue saw it.
	eventually.True(t, 10*time.Second, "the 4th invocation, counted", func() bool {
		return len(h.q.delivered("fn")) == 4 && h.tp.Stats().Delivered == 4
	})
	if st := h.tp.Stats(); st.Published != 4 || st.Delivered != 4 || len(h.q.delivered("fn")) != 4 {
		t.Errorf("stats = %+v after %d invocations, want 4 published and delivered", st, len(h.q.delivered("fn")))
	}
}

func TestTopicFilters(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "t", Function: "fn", Filter: "type=keep"})
	h.subscribe(stratus.Subscription{Topic: "t", Function: "other", Filter: "source-prefix=/a/"})
	h.publish("t",
		ev("1", "keep", "/a/x", ""), ev("2", "drop", "/a/y", ""), ev("3", "keep", "/b/z", ""), ev("4", "other", "/b/", ""))
	eventually.True(t, 10*time.Second, "filtered deliveries", func() bool {
		return len(h.q.delivered("fn")) == 2 && len(h.q.delivered("other")) == 2
	})
	if diff := cmp.Diff([][]string{{"1"}, {"3"}}, ids(t, h.q.delivered("fn"))); diff != "" {
		t.Errorf("type=keep got (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"1"}, {"2"}}, ids(t, h.q.delivered("other"))); diff != "" {
		t.Errorf("source-prefix=/a/ got (-want +got):\n%s", diff)
	}
}

func TestTopicBatches(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "t", Function: "fn", Batch: 3})
	var evs []cloudevent.Event
	for i := range 7 {
		evs = append(evs, ev(fmt.Sprint(i), "x", "/s", ""))
	}
	h.publish("t", evs...)
	// Two full batches at once, the last one after BatchWait.
	eventually.True(t, 10*time.Second, "three batches", func() bool { return len(h.q.delivered("fn")) == 3 })
	if diff := cmp.Diff([][]string{{"0", "1", "2"}, {"3", "4", "5"}, {"6"}}, ids(t, h.q.delivered("fn"))); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestTopicBatchesStayUnderTheEventLimit(t *testing.T) {
	h := newTopicHarness(t)
	h.tp = h.newTopics(func(c *TopicsConfig) { c.MaxEventSize = 400 })
	h.topic("t")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "t", Function: "fn", Batch: 10})
	var evs []cloudevent.Event
	for i := range 4 {
		evs = append(evs, ev(fmt.Sprint(i), "x", "/s", `"`+strings.Repeat("a", 100)+`"`))
	}
	h.publish("t", evs...)
	eventually.True(t, 10*time.Second, "all events", func() bool {
		n := 0
		for _, b := range ids(t, h.q.delivered("fn")) {
			n += len(b)
		}
		return n == 4
	})
	for _, e := range h.q.delivered("fn") {
		if len(e) > 400 {
			t.Errorf("a batch of %d bytes exceeds the limit of 400", len(e))
		}
	}
	big := ev("big", "x", "/s", `"`+strings.Repeat("a", 400)+`"`)
	if err := h.tp.Publish(t.Context(), "t", []cloudevent.Event{big}); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("publish of an event over the limit: %v, want ErrTooLarge", err)
	}
}

func TestTopicRetriesEnqueueAndDropsForMissingFunction(t *testing.T) {
	h := newTopicHarness(t)
	h.q.fail = func(fn string, n int) error {
		switch {
		case fn == "fn" && n < 2:
			return fmt.Errorf("stream busy: %w", stratus.ErrUnavailable)
		case fn == "other":
			return fmt.Errorf("function %q: %w", fn, stratus.ErrNotFound)
		}
		return nil
	}
	h.topic("t")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "t", Function: "fn"})
	h.publish("t", ev("1", "x", "/s", ""))
	eventually.True(t, 10*time.Second, "the retried enqueue", func() bool { return len(h.q.delivered("fn")) == 1 })

	h.subscribe(stratus.Subscription{Topic: "t", Function: "other"})
	h.publish("t", ev("2", "x", "/s", ""))
	eventually.True(t, 10*time.Second, "a dropped event", func() bool { return h.tp.Stats().Dropped == 1 })
	eventually.True(t, 10*time.Second, "event 2 for fn", func() bool { return len(h.q.delivered("fn")) == 2 })
}

func TestTopicURLSubscriberWithRetries(t *testing.T) {
	h := newTopicHarness(t)
	type got struct {
		ct   string
		body string
	}
	var (
		mu    sync.Mutex
		posts []got
		calls atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, got{r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		switch n := calls.Add(1); {
		case strings.Contains(string(b), `"refuse"`):
			w.WriteHeader(http.StatusBadRequest)
		case strings.Contains(string(b), `"always"`):
			w.WriteHeader(http.StatusBadGateway)
		case n <= 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	h.tp = h.newTopics(func(c *TopicsConfig) { c.URLAttempts = 3 })
	h.topic("t")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "t", URL: srv.URL + "/hook"})
	h.publish("t", ev("1", "x", "/s", `{"a":1}`))
	eventually.True(t, 10*time.Second, "a delivery after two failures", func() bool { return h.tp.Stats().Delivered == 1 })
	mu.Lock()
	if len(posts) != 3 {
		t.Errorf("%d POSTs, want 3", len(posts))
	}
	for _, p := range posts {
		if !strings.HasPrefix(p.ct, cloudevent.ContentTypeJSON) || !strings.Contains(p.body, `"id":"1"`) || !strings.Contains(p.body, `"data":{"a":1}`) {
			t.Errorf("POST %q %s, want the structured event 1", p.ct, p.body)
		}
	}
	mu.Unlock()

	h.publish("t", ev("2", "refuse", "/s", ""))
	eventually.True(t, 10*time.Second, "a refused event dropped", func() bool { return h.tp.Stats().Dropped == 1 })
	before := calls.Load()
	h.publish("t", ev("3", "always", "/s", ""))
	eventually.True(t, 10*time.Second, "an event dropped after 3 attempts", func() bool { return h.tp.Stats().Dropped == 2 })
	if n := calls.Load() - before; n != 3 {
		t.Errorf("%d attempts for a failing URL, want 3", n)
	}
}

func TestTopicPlainNATSPublishAndInvalidMessages(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "t", Function: "fn"})
	if err := h.tp.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	nc := h.bus.Conn()
	for _, b := range []string{
		`{"specversion":"1.0","id":"n1","source":"/nats","type":"x"}`,
		`{"specversion":"1.0","source":"/nats","type":"x"}`, // no id
		`not json`,
		`{"specversion":"1.0","id":"n2","source":"/nats","type":"x","data":{"k":true}}`,
	} {
		if err := nc.Publish(TopicSubject("t"), []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	eventually.True(t, 10*time.Second, "two valid events", func() bool { return len(h.q.delivered("fn")) == 2 })
	if diff := cmp.Diff([][]string{{"n1"}, {"n2"}}, ids(t, h.q.delivered("fn"))); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	eventually.True(t, 5*time.Second, "invalid count", func() bool { return h.tp.Stats().Invalid == 2 })
}

func TestTopicSubscriptionLifecycle(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	h.topic("u")
	h.run()
	a := h.subscribe(stratus.Subscription{Topic: "t", Function: "fn"})
	b := h.subscribe(stratus.Subscription{Topic: "u", Function: "other"})
	h.publish("t", ev("1", "x", "/s", ""))
	eventually.True(t, 10*time.Second, "first delivery", func() bool { return len(h.q.delivered("fn")) == 1 })
	eventually.True(t, 5*time.Second, "two consumers", func() bool { return len(h.consumerNames()) == 2 })

	if err := h.tp.Unsubscribe(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.tp.Unsubscribe(t.Context(), a.ID); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second unsubscribe: %v, want ErrNotFound", err)
	}
	eventually.True(t, 5*time.Second, "a's consumer gone", func() bool { return cmp.Equal(h.consumerNames(), []string{b.ID}) })
	h.publish("t", ev("2", "x", "/s", ""))

	// Subscriptions survive a restart; events published while stopped
	// arrive after it.
	h.stopRun()
	h.publish("u", ev("3", "x", "/s", ""))
	h.tp = h.newTopics()
	h.run()
	eventually.True(t, 10*time.Second, "delivery after restart", func() bool { return len(h.q.delivered("other")) == 1 })
	if n := len(h.q.delivered("fn")); n != 1 {
		t.Errorf("an unsubscribed function got %d events, want 1", n)
	}

	if err := h.tp.DeleteTopic(t.Context(), "u"); err != nil {
		t.Fatal(err)
	}
	if err := h.tp.DeleteTopic(t.Context(), "u"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	eventually.True(t, 5*time.Second, "no consumers", func() bool { return len(h.consumerNames()) == 0 })
	if subs, _ := h.tp.Subscriptions(t.Context(), ""); len(subs) != 0 {
		t.Errorf("subscriptions after deleting their topics: %+v", subs)
	}
	if err := h.tp.Publish(t.Context(), "u", []cloudevent.Event{ev("4", "x", "/s", "")}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("publish to a deleted topic: %v, want ErrNotFound", err)
	}
}

func TestTopicRunRemovesOrphanConsumers(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	sub := h.subscribe(stratus.Subscription{Topic: "t", Function: "fn"}) // stored; Run is not running
	if _, err := h.tp.consumer(t.Context(), stratus.Subscription{ID: "sub-orphan", Topic: "t", Batch: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h.run()
	eventually.True(t, 5*time.Second, "only the stored subscription's consumer", func() bool {
		return cmp.Equal(h.consumerNames(), []string{sub.ID})
	})
}

func TestSubscribeRefusesBadInput(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	for _, tc := range []struct {
		sub  stratus.Subscription
		kind error
		msg  string
	}{
		{stratus.Subscription{Topic: "t"}, stratus.ErrInvalid, "give a function or a URL"},
		{stratus.Subscription{Topic: "t", Function: "fn", URL: "http://x/"}, stratus.ErrInvalid, "not both"},
		{stratus.Subscription{Topic: "t", Function: "fn", Filter: "kind=x"}, stratus.ErrInvalid, "want type=EXACT or source-prefix=PREFIX"},
		{stratus.Subscription{Topic: "t", Function: "fn", Filter: "type="}, stratus.ErrInvalid, "empty value"},
		{stratus.Subscription{Topic: "t", Function: "fn", Batch: -1}, stratus.ErrInvalid, "batch -1"},
		{stratus.Subscription{Topic: "t", Function: "fn", Batch: stratus.MaxSubscriptionBatch + 1}, stratus.ErrInvalid, "must be between 1 and"},
		{stratus.Subscription{Topic: "t", URL: "http://x/", Batch: 2}, stratus.ErrInvalid, "only function subscribers"},
		{stratus.Subscription{Topic: "t", URL: "ftp://x/"}, stratus.ErrInvalid, "absolute http"},
		{stratus.Subscription{Topic: "t", URL: "/relative"}, stratus.ErrInvalid, "absolute http"},
		{stratus.Subscription{Topic: "t", Function: "bad name"}, stratus.ErrInvalid, "name"},
		{stratus.Subscription{Topic: "nope", Function: "fn"}, stratus.ErrNotFound, `topic "nope"`},
		{stratus.Subscription{Topic: "t", Function: "ghost"}, stratus.ErrNotFound, `function "ghost"`},
		{stratus.Subscription{Topic: "t", Function: "fn:typo"}, stratus.ErrNotFound, `function "fn:typo"`},
	} {
		_, err := h.tp.Subscribe(t.Context(), tc.sub)
		if !errors.Is(err, tc.kind) || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("Subscribe(%+v) = %v, want %v mentioning %q", tc.sub, err, tc.kind, tc.msg)
		}
	}
	if subs, err := h.tp.Subscriptions(t.Context(), ""); err != nil || len(subs) != 0 {
		t.Errorf("refused subscriptions left %+v, %v", subs, err)
	}
	if _, err := h.tp.CreateTopic(t.Context(), "t"); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("create of an existing topic: %v, want ErrConflict", err)
	}
	if _, err := h.tp.CreateTopic(t.Context(), "a.b"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("create of topic a.b: %v, want ErrInvalid", err)
	}
}

func TestDestinationPublishesToTopic(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("failures")
	h.run()
	h.subscribe(stratus.Subscription{Topic: "failures", Function: "fn", Filter: "type=" + DestinationFailureType})
	d := &Destinations{
		Config: func(fn string) (stratus.FunctionConfig, bool) {
			return stratus.FunctionConfig{OnFailure: "topic:failures", OnSuccess: "topic:failures"}, true
		},
		Publish: h.tp.Publish, Region: "local", Log: testLog(),
	}
	d.Done(t.Context(), "worker", "req-1", []byte(`{"job":1}`), fnError("Boom", "it broke"), 3, &FunctionError{Type: "Boom", Message: "it broke"})
	d.Done(t.Context(), "worker", "req-2", []byte(`{"job":2}`), &stratus.Response{Body: []byte(`"fine"`)}, 1, nil) // filtered out
	eventually.True(t, 10*time.Second, "the failure record", func() bool { return len(h.q.delivered("fn")) == 1 })
	e, err := cloudevent.FromJSON([]byte(h.q.delivered("fn")[0]), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "req-1" || e.Type != DestinationFailureType || e.Source != "stratus/functions/worker" || e.Subject != "RetriesExhausted" {
		t.Errorf("destination event %+v", e)
	}
	var rec Record
	if err := json.Unmarshal(e.Data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestContext.RequestID != "req-1" || rec.RequestContext.ApproximateInvokeCount != 3 || string(rec.RequestPayload) != `{"job":1}` {
		t.Errorf("record %+v", rec)
	}
}

// A subscription to NAME:$LATEST is one to NAME, the head.
func TestSubscribeLatestIsTheHead(t *testing.T) {
	h := newTopicHarness(t)
	h.topic("t")
	s, err := h.tp.Subscribe(t.Context(), stratus.Subscription{Topic: "t", Function: "fn:$LATEST"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Function != "fn" {
		t.Errorf("subscribed function %q, want fn", s.Function)
	}
}
