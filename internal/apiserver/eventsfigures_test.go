package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/events"
)

// figureTopics is a topic service with fixed topics, subscriptions and
// depths; err, when set, is what SubscriptionDepths answers.
type figureTopics struct {
	topicService
	subs   []stratus.Subscription
	depths map[string]events.SubscriptionDepth

	mu  sync.Mutex
	err error
}

var figureTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (f *figureTopics) ListTopics(context.Context) ([]stratus.Topic, error) {
	return []stratus.Topic{{Name: "audit", CreatedAt: figureTime}, {Name: "idle", CreatedAt: figureTime}, {Name: "orders", CreatedAt: figureTime}}, nil
}

func (f *figureTopics) GetTopic(_ context.Context, name string) (*stratus.Topic, error) {
	return &stratus.Topic{Name: name, CreatedAt: figureTime}, nil
}

func (f *figureTopics) Subscriptions(_ context.Context, topic string) ([]stratus.Subscription, error) {
	var out []stratus.Subscription
	for _, s := range f.subs {
		if topic == "" || s.Topic == topic {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *figureTopics) SubscriptionDepths(context.Context) (map[string]events.SubscriptionDepth, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.depths, f.err
}

func (f *figureTopics) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// TestTopicFigures: topics show their pending events summed over their
// subscriptions, subscriptions their own and the oldest's age; when
// JetStream cannot be read, the figures are absent, not 0.
func TestTopicFigures(t *testing.T) {
	subs := []stratus.Subscription{
		{ID: "sub-a", Topic: "orders", Function: "fn", Batch: 1, CreatedAt: figureTime},
		{ID: "sub-b", Topic: "orders", URL: "http://x/", Batch: 1, CreatedAt: figureTime},
		{ID: "sub-c", Topic: "audit", Function: "fn", Batch: 1, CreatedAt: figureTime}, // no consumer yet
	}
	tp := &figureTopics{subs: subs, depths: map[string]events.SubscriptionDepth{
		"sub-a": {Pending: 3, Oldest: 1500 * time.Millisecond},
		"sub-b": {Pending: 4, Oldest: 90 * time.Second},
		"sub-x": {Pending: 9}, // a consumer no stored subscription names
	}}
	s := New(Config{Topics: tp, Token: "tok"})
	get := func(path string, out any) {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, w.Body)
		}
	}
	n := func(v int64) *int64 { return &v }
	sec := func(v float64) *float64 { return &v }

	var list v1.TopicList
	get("/v1/topics", &list)
	want := []v1.Topic{
		{Name: "audit", CreatedAt: figureTime, Subscriptions: 1, Pending: n(0)},
		{Name: "idle", CreatedAt: figureTime, Pending: n(0)},
		{Name: "orders", CreatedAt: figureTime, Subscriptions: 2, Pending: n(7)},
	}
	if diff := cmp.Diff(want, list.Topics); diff != "" {
		t.Errorf("GET /v1/topics (-want +got):\n%s", diff)
	}
	var one v1.Topic
	get("/v1/topics/orders", &one)
	if diff := cmp.Diff(want[2], one); diff != "" {
		t.Errorf("GET /v1/topics/orders (-want +got):\n%s", diff)
	}
	var sl v1.SubscriptionList
	get("/v1/subscriptions", &sl)
	wantSubs := []v1.Subscription{
		{Subscription: subs[0], Pending: n(3), OldestAgeSec: sec(1.5)},
		{Subscription: subs[1], Pending: n(4), OldestAgeSec: sec(90)},
		{Subscription: subs[2], Pending: n(0), OldestAgeSec: sec(0)},
	}
	if diff := cmp.Diff(wantSubs, sl.Subscriptions); diff != "" {
		t.Errorf("GET /v1/subscriptions (-want +got):\n%s", diff)
	}
	get("/v1/topics/audit/subscriptions", &sl)
	if diff := cmp.Diff(wantSubs[2:], sl.Subscriptions); diff != "" {
		t.Errorf("GET /v1/topics/audit/subscriptions (-want +got):\n%s", diff)
	}

	tp.fail(stratus.ErrUnavailable)
	var unread v1.TopicList
	get("/v1/topics", &unread)
	for _, tp := range unread.Topics {
		if tp.Pending != nil {
			t.Errorf("topic %s shows %d pending while JetStream cannot be read", tp.Name, *tp.Pending)
		}
	}
	var raw struct {
		Subscriptions []map[string]any `json:"subscriptions"`
	}
	get("/v1/subscriptions", &raw)
	for _, sub := range raw.Subscriptions {
		if _, ok := sub["pending"]; ok || sub["oldestAgeSec"] != nil || sub["id"] == nil {
			t.Errorf("subscription while JetStream cannot be read: %v, want its fields without figures", sub)
		}
	}
}

// depthsQueue answers Depths with fixed figures, or err.
type depthsQueue struct {
	*recordingQueue
	depths map[string]events.AsyncDepth
	err    error
}

func (q *depthsQueue) Depths(context.Context) (map[string]events.AsyncDepth, error) {
	return q.depths, q.err
}

// TestFunctionListAsync: GET /v1/functions shows each function's async
// queue as GET of one does: 0 for a function without events, absent when
// JetStream cannot be read.
func TestFunctionListAsync(t *testing.T) {
	r := newVersionsRig(t)
	r.deploy("busy", "a")
	r.deploy("idle", "b")
	q := &depthsQueue{recordingQueue: r.queue, depths: map[string]events.AsyncDepth{
		"busy":   {Pending: 5, Oldest: 2500 * time.Millisecond},
		"busy:1": {Pending: 7}, // a version's queue is not the function's
	}}
	serve := func() map[string]*v1.AsyncQueue {
		t.Helper()
		s := New(Config{Functions: r.fns, Store: r.s.st, Pools: stubPools{}, Logs: stubFlusher{}, Queue: q, Token: "tok"})
		req := httptest.NewRequest("GET", "/v1/functions", nil)
		req.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		var l v1.FunctionList
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &l) != nil {
			t.Fatalf("GET /v1/functions: %d %s", w.Code, w.Body)
		}
		out := map[string]*v1.AsyncQueue{}
		for _, f := range l.Functions {
			out[f.Name] = f.Async
		}
		return out
	}
	want := map[string]*v1.AsyncQueue{"busy": {Depth: 5, OldestAgeSec: 2.5}, "idle": {}}
	if diff := cmp.Diff(want, serve()); diff != "" {
		t.Errorf("async queues in the list (-want +got):\n%s", diff)
	}
	q.err = stratus.ErrUnavailable
	if diff := cmp.Diff(map[string]*v1.AsyncQueue{"busy": nil, "idle": nil}, serve()); diff != "" {
		t.Errorf("async queues while JetStream cannot be read (-want +got):\n%s", diff)
	}
}
