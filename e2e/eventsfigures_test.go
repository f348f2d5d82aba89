package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// figTopic is a topic in GET /v1/topics.
type figTopic struct {
	Name          string `json:"name"`
	Subscriptions int    `json:"subscriptions"`
	Pending       *int64 `json:"pending"`
}

// figSubscription is a subscription in GET /v1/subscriptions.
type figSubscription struct {
	ID           string   `json:"id"`
	Topic        string   `json:"topic"`
	Function     string   `json:"function"`
	URL          string   `json:"url"`
	Pending      *int64   `json:"pending"`
	OldestAgeSec *float64 `json:"oldestAgeSec"`
}

// figStatus is GET /v1/invocations/ID.
type figStatus struct {
	State            string `json:"state"`
	Attempt          int    `json:"attempt"`
	Destination      string `json:"destination"`
	DestinationState string `json:"destinationState"`
}

// figSleeper is a Python handler that sleeps for its CloudEvent's
// data.sleep milliseconds.
const figSleeper = "import time\ndef handler(event, context):\n    time.sleep(event.get('data', {}).get('sleep', 0) / 1000)\n    return {'ok': True}\n"

// figFunction is a function in GET /v1/functions.
type figFunction struct {
	Name  string `json:"name"`
	Async *struct {
		Depth        int     `json:"depth"`
		OldestAgeSec float64 `json:"oldestAgeSec"`
	} `json:"async"`
}

func (s *server) figGet(path string) []byte {
	s.t.Helper()
	resp, body := s.do("GET", path, nil, true)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// figTopics returns the topics by name.
func (s *server) figTopics() map[string]figTopic {
	s.t.Helper()
	out := map[string]figTopic{}
	for _, tp := range decode[struct {
		Topics []figTopic `json:"topics"`
	}](s.t, s.figGet("/v1/topics")).Topics {
		out[tp.Name] = tp
	}
	return out
}

// figSubscriptions returns the subscriptions of topic by ID.
func (s *server) figSubscriptions(topic string) map[string]figSubscription {
	s.t.Helper()
	out := map[string]figSubscription{}
	for _, sub := range decode[struct {
		Subscriptions []figSubscription `json:"subscriptions"`
	}](s.t, s.figGet("/v1/topics/"+topic+"/subscriptions")).Subscriptions {
		out[sub.ID] = sub
	}
	return out
}

// figFunctions returns GET /v1/functions by name.
func (s *server) figFunctions() map[string]figFunction {
	s.t.Helper()
	out := map[string]figFunction{}
	for _, f := range decode[struct {
		Functions []figFunction `json:"functions"`
	}](s.t, s.figGet("/v1/functions")).Functions {
		out[f.Name] = f
	}
	return out
}

// TestEventsFigures: what the console's Events page shows, through the API
// and the CLI: a topic whose URL subscriber is slow piles events up (the
// topic's and the subscription's pending count, the oldest's age) and
// drains to 0; a function subscriber whose function is slow piles
// events up in the function's async queue, which GET /v1/functions shows
// for every function; an async invocation that fails goes to its
// on-failure destination and its status says so, and one whose
// destination topic is gone says that failed.
func TestEventsFigures(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	var mu sync.Mutex
	got := map[string]bool{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // slow until released; the server retries a POST that times out
		case <-release:
		case <-r.Context().Done():
			return
		}
		var e tpEvent
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got[e.ID] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	defer free() // before hook.Close, which waits for the handlers

	s := startServer(t)
	needTool(t, "python3")
	s.mustCLI("deploy", "slow", "--runtime", "python3", "--handler", "sleeper.handler", "--max-concurrency", "1",
		writeFiles(t, map[string]string{"sleeper.py": figSleeper}))
	s.mustCLI("deploy", "dlq", "--runtime", "provided", fixture("goecho"))
	s.mustCLI("deploy", "broken", "--runtime", "provided", "--max-retries", "0", "--on-failure", "function:dlq", fixture("goecho"))
	s.mustCLI("topic", "create", "orders")
	s.mustCLI("topic", "create", "gone")
	s.mustCLI("deploy", "lost", "--runtime", "provided", "--on-success", "topic:gone", fixture("goecho"))
	s.mustCLI("topic", "rm", "gone")
	s.mustCLI("subscribe", "orders", "--url", hook.URL+"/hook")
	s.mustCLI("subscribe", "orders", "--function", "slow")
	var urlSub, fnSub string
	for id, sub := range s.figSubscriptions("orders") {
		if sub.URL != "" {
			urlSub = id
		} else {
			fnSub = id
		}
		if sub.Pending == nil || *sub.Pending != 0 || sub.OldestAgeSec == nil || *sub.OldestAgeSec != 0 {
			t.Errorf("subscription %s before any event: pending %v, oldest %v; want 0 and 0", id, sub.Pending, sub.OldestAgeSec)
		}
	}
	if tp := s.figTopics()["orders"]; tp.Pending == nil || *tp.Pending != 0 || tp.Subscriptions != 2 {
		t.Errorf("topic orders before any event: %+v, want 2 subscriptions, 0 pending", tp)
	}

	// 6 events: the URL holds them all; slow runs one at a time.
	var batch []string
	for i := range 6 {
		batch = append(batch, tpCE(fmt.Sprintf("e%d", i), "order.created", "/shop", `{"sleep":1000}`))
	}
	s.tpMustPublish("orders", "["+strings.Join(batch, ",")+"]", []string{"e0", "e1", "e2", "e3", "e4", "e5"}, "Content-Type", ctBatch)

	eventually.Nil(t, 20*time.Second, "the URL subscription's 6 events pending, the oldest over a second old", func() error {
		sub := s.figSubscriptions("orders")[urlSub]
		if sub.Pending == nil || *sub.Pending != 6 || sub.OldestAgeSec == nil || *sub.OldestAgeSec < 1 {
			return fmt.Errorf("URL subscription: pending %v, oldest %v", deref(sub.Pending), deref(sub.OldestAgeSec))
		}
		return nil
	})
	if tp := s.figTopics()["orders"]; tp.Pending == nil || *tp.Pending < 6 {
		t.Errorf("topic orders while its URL subscriber holds 6 events: pending %v, want at least 6", deref(tp.Pending))
	}
	// The CLI shows them.
	if out := s.mustCLI("topic", "ls"); !strings.Contains(out, "PENDING") {
		t.Errorf("stratus topic ls without PENDING:\n%s", out)
	}
	out := s.mustCLI("subscriptions", "orders")
	if !strings.Contains(out, "PENDING") || !strings.Contains(out, "OLDEST") || !cliRowHas(out, urlSub, "6") {
		t.Errorf("stratus subscriptions orders: want PENDING, OLDEST and 6 pending for %s:\n%s", urlSub, out)
	}

	// The function subscriber handed its events to slow's async queue at
	// once; they wait there, and the function list shows it.
	eventually.Nil(t, 20*time.Second, "slow's async queue in the function list", func() error {
		f := s.figFunctions()["slow"]
		if f.Async == nil || f.Async.Depth < 2 || f.Async.OldestAgeSec <= 0 {
			return fmt.Errorf("slow in the list: %+v", f.Async)
		}
		return nil
	})
	if f := s.figFunctions()["dlq"]; f.Async == nil || f.Async.Depth != 0 || f.Async.OldestAgeSec != 0 {
		t.Errorf("an idle function in the list: async %+v, want depth 0", f.Async)
	}
	if sub := s.figSubscriptions("orders")[fnSub]; sub.Pending == nil {
		t.Errorf("function subscription without a pending count")
	}

	free()
	eventually.Nil(t, 30*time.Second, "every figure drained to 0", func() error {
		subs := s.figSubscriptions("orders")
		for id, sub := range subs {
			if sub.Pending == nil || *sub.Pending != 0 || sub.OldestAgeSec == nil || *sub.OldestAgeSec != 0 {
				return fmt.Errorf("subscription %s: pending %v, oldest %v", id, deref(sub.Pending), deref(sub.OldestAgeSec))
			}
		}
		if tp := s.figTopics()["orders"]; tp.Pending == nil || *tp.Pending != 0 {
			return fmt.Errorf("topic orders: pending %v", deref(tp.Pending))
		}
		if f := s.figFunctions()["slow"]; f.Async == nil || f.Async.Depth != 0 || f.Async.OldestAgeSec != 0 {
			return fmt.Errorf("slow's queue: %+v", f.Async)
		}
		return nil
	})
	mu.Lock()
	if len(got) != 6 {
		t.Errorf("the URL subscriber got %d distinct events, want 6", len(got))
	}
	mu.Unlock()

	// A failed invocation's record goes to its on-failure destination.
	id := s.enqueue("broken", `{"fail":"always"}`)
	var st figStatus
	eventually.True(t, 30*time.Second, "broken's invocation routed to dlq", func() bool {
		resp, body := s.do("GET", "/v1/invocations/"+id, nil, true)
		st = decode[figStatus](t, body)
		return resp.StatusCode == 200 && st.Destination != ""
	})
	if st.State != "failed" || st.Attempt != 1 || st.Destination != "function:dlq" || st.DestinationState != "delivered" {
		t.Errorf("status of the failed invocation %+v, want failed after 1 attempt, destination function:dlq delivered", st)
	}
	if out := s.mustCLI("invocation", id); !cliRowHas(out, "Destination:", "function:dlq", "(delivered)") {
		t.Errorf("stratus invocation %s without its destination:\n%s", id, out)
	}
	// One whose destination topic was removed after the deploy.
	id = s.enqueue("lost", `{"n":1}`)
	eventually.True(t, 30*time.Second, "lost's invocation routed", func() bool {
		resp, body := s.do("GET", "/v1/invocations/"+id, nil, true)
		st = decode[figStatus](t, body)
		return resp.StatusCode == 200 && st.Destination != ""
	})
	if st.State != "succeeded" || st.Destination != "topic:gone" || st.DestinationState != "failed" {
		t.Errorf("status of an invocation whose destination is gone %+v, want succeeded, topic:gone failed", st)
	}
	// One without a destination shows none.
	id = s.enqueue("dlq", `{"n":2}`)
	s.waitState(id, "succeeded", 30*time.Second)
	if _, body := s.do("GET", "/v1/invocations/"+id, nil, true); strings.Contains(string(body), "destination") {
		t.Errorf("status of an invocation without a destination: %s", body)
	}
}

// cliRowHas reports whether a line of a CLI table holds every cell.
func cliRowHas(out string, cells ...string) bool {
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		all := true
		for _, c := range cells {
			found := false
			for _, f := range fields {
				found = found || f == c
			}
			all = all && found
		}
		if all {
			return true
		}
	}
	return false
}

// deref shows a figure that may be absent.
func deref[T any](p *T) any {
	if p == nil {
		return "absent"
	}
	return *p
}
