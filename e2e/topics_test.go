package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stratus-run/stratus/internal/eventually"
)

// tpSinkApp prints each event it gets on one line; the tests read the
// function's log.
const tpSinkApp = "import json\ndef handler(event, context):\n    print(json.dumps(event, separators=(',', ':')))\n    return {'ok': True}\n"

// tpEvent is a CloudEvent as a subscriber receives it.
type tpEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// tpDeploySinks deploys the printing Python handler under each name.
func (s *server) tpDeploySinks(names ...string) {
	s.t.Helper()
	needTool(s.t, "python3")
	dir := writeFiles(s.t, map[string]string{"sink.py": tpSinkApp})
	for _, n := range names {
		s.mustCLI("deploy", n, "--runtime", "python3", "--handler", "sink.handler", dir)
	}
}

// tpDeliveries returns the events fn was invoked with, one entry per
// invocation: a single CloudEvent, or the list of a batch.
func (s *server) tpDeliveries(fn string) [][]tpEvent {
	s.t.Helper()
	resp, body := s.do("GET", "/v1/functions/"+fn+"/logs?limit=10000", nil, true)
	if resp.StatusCode != 200 {
		s.t.Fatalf("logs of %s: %d %s", fn, resp.StatusCode, body)
	}
	var out [][]tpEvent
	for _, l := range decode[struct {
		Lines []struct {
			Stream string `json:"stream"`
			Text   string `json:"text"`
		} `json:"lines"`
	}](s.t, body).Lines {
		switch {
		case l.Stream != "stdout":
		case strings.HasPrefix(l.Text, "["):
			out = append(out, decode[[]tpEvent](s.t, []byte(l.Text)))
		case strings.HasPrefix(l.Text, "{"):
			out = append(out, []tpEvent{decode[tpEvent](s.t, []byte(l.Text))})
		}
	}
	return out
}

// tpIDs is the sorted ids of every event fn received.
func (s *server) tpIDs(fn string) []string {
	var ids []string
	for _, d := range s.tpDeliveries(fn) {
		for _, e := range d {
			ids = append(ids, e.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// tpWaitIDs waits until fn has received exactly the events want.
func (s *server) tpWaitIDs(fn string, want ...string) {
	s.t.Helper()
	slices.Sort(want)
	eventually.Nil(s.t, 20*time.Second, fmt.Sprintf("%s to receive the events %v", fn, want), func() error {
		if got := s.tpIDs(fn); !slices.Equal(got, want) {
			return fmt.Errorf("it received %v\nserver log:\n%s", got, s.Stderr())
		}
		return nil
	})
}

// tpPublish posts body to topic's events with the token and headers
// (pairs; Content-Type among them).
func (s *server) tpPublish(topic, body string, hdr ...string) (int, []byte) {
	s.t.Helper()
	resp, b := s.do("POST", "/v1/topics/"+topic+"/events", []byte(body), true, hdr...)
	return resp.StatusCode, b
}

// tpMustPublish publishes and checks the 202 and the ids.
func (s *server) tpMustPublish(topic, body string, wantIDs []string, hdr ...string) {
	s.t.Helper()
	status, b := s.tpPublish(topic, body, hdr...)
	if status != http.StatusAccepted {
		s.t.Fatalf("publish to %s: %d %s", topic, status, b)
	}
	got := decode[struct {
		IDs []string `json:"ids"`
	}](s.t, b).IDs
	if !slices.Equal(got, wantIDs) {
		s.t.Fatalf("publish answered ids %v, want %v", got, wantIDs)
	}
}

const (
	ctStructured = "application/cloudevents+json"
	ctBatch      = "application/cloudevents-batch+json"
)

func tpCE(id, typ, source, data string) string {
	s := fmt.Sprintf(`{"specversion":"1.0","id":%q,"type":%q,"source":%q`, id, typ, source)
	if data != "" {
		s += `,"data":` + data
	}
	return s + "}"
}

// TestTopicPublishModes publishes in binary, structured and batched mode,
// through the API and the CLI, to a subscribed Python function, then
// unsubscribes it and removes the topic.
func TestTopicPublishModes(t *testing.T) {
	s := startServer(t)
	s.tpDeploySinks("sink")
	if out := s.mustCLI("topic", "create", "orders"); !strings.Contains(out, "created topic orders") {
		t.Errorf("topic create printed %q", out)
	}
	id := strings.TrimSpace(s.mustCLI("subscribe", "orders", "--function", "sink"))
	if !strings.HasPrefix(id, "sub-") {
		t.Fatalf("subscribe printed %q, want a subscription id", id)
	}
	if out := s.mustCLI("topic", "ls"); !regexp.MustCompile(`orders\s+1\s`).MatchString(out) {
		t.Errorf("topic ls printed %q, want orders with 1 subscription", out)
	}

	s.tpMustPublish("orders", `{"mode":"binary"}`, []string{"b1"},
		"Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "b1", "ce-source", "/shop", "ce-type", "order.created", "ce-subject", "42")
	s.tpMustPublish("orders", tpCE("s1", "order.paid", "/shop", `{"mode":"structured"}`), []string{"s1"}, "Content-Type", ctStructured)
	s.tpMustPublish("orders", "["+tpCE("m1", "order.paid", "/shop", `1`)+","+tpCE("m2", "order.paid", "/shop", `2`)+"]",
		[]string{"m1", "m2"}, "Content-Type", ctBatch)
	cliID := strings.TrimSpace(s.mustCLI("topic", "publish", "orders", "--data", `{"mode":"cli"}`, "--type", "order.cli"))
	file := filepath.Join(t.TempDir(), "batch.json")
	if err := os.WriteFile(file, []byte("["+tpCE("f1", "order.file", "/file", `"x"`)+"]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := s.mustCLI("topic", "publish", "orders", "--file", file); strings.TrimSpace(out) != "f1" {
		t.Errorf("publish --file printed %q, want f1", out)
	}
	s.tpWaitIDs("sink", "b1", "s1", "m1", "m2", cliID, "f1")

	byID := map[string]tpEvent{}
	for _, d := range s.tpDeliveries("sink") {
		if len(d) != 1 {
			t.Errorf("a subscription without --batch got a list of %d events", len(d))
		}
		byID[d[0].ID] = d[0]
	}
	if e := byID["b1"]; e.SpecVersion != "1.0" || e.Source != "/shop" || e.Type != "order.created" || e.Subject != "42" ||
		e.DataContentType != "application/json" || string(e.Data) != `{"mode":"binary"}` {
		t.Errorf("binary-mode event arrived as %+v", e)
	}
	if e := byID["s1"]; string(e.Data) != `{"mode":"structured"}` || e.Type != "order.paid" {
		t.Errorf("structured event arrived as %+v", e)
	}
	if e := byID[cliID]; e.Type != "order.cli" || e.Source != "stratus/cli" || string(e.Data) != `{"mode":"cli"}` {
		t.Errorf("CLI event arrived as %+v", e)
	}

	// Each event ran as an async invocation with a record.
	eventually.True(t, 10*time.Second, "6 records", func() bool { return len(s.records("sink")) == 6 })

	// Publishing the same event again (a retry) delivers it once.
	s.tpMustPublish("orders", tpCE("s1", "order.paid", "/shop", `{"mode":"structured"}`), []string{"s1"}, "Content-Type", ctStructured)
	s.tpMustPublish("orders", tpCE("s2", "order.paid", "/shop", ""), []string{"s2"}, "Content-Type", ctStructured)
	s.tpWaitIDs("sink", "b1", "s1", "m1", "m2", cliID, "f1", "s2")

	subs := decode[[]struct {
		ID       string `json:"id"`
		Function string `json:"function"`
	}](t, []byte(s.mustCLI("subscriptions", "orders", "-o", "json")))
	if len(subs) != 1 || subs[0].ID != id || subs[0].Function != "sink" {
		t.Errorf("subscriptions -o json = %+v", subs)
	}
	if out := s.mustCLI("subscriptions"); !strings.Contains(out, id) || !strings.Contains(out, "function sink") {
		t.Errorf("subscriptions printed %q", out)
	}
	s.mustCLI("unsubscribe", id)
	if r := s.cli("unsubscribe", id); r.Code == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("second unsubscribe: exit %d stderr %q", r.Code, r.Stderr)
	}
	s.tpMustPublish("orders", tpCE("after", "order.paid", "/shop", ""), []string{"after"}, "Content-Type", ctStructured)
	s.mustCLI("topic", "rm", "orders")
	if out := s.mustCLI("topic", "ls", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("topic ls after rm printed %q", out)
	}
	status, body := s.tpPublish("orders", tpCE("gone", "x", "/x", ""), "Content-Type", ctStructured)
	if status != http.StatusNotFound {
		t.Errorf("publish to a removed topic: %d %s", status, body)
	}
	if ids := s.tpIDs("sink"); slices.Contains(ids, "after") {
		t.Errorf("an unsubscribed function received an event")
	}
}

// TestTopicFiltersAndBatches checks type= and source-prefix= filters and
// a batching subscription.
func TestTopicFiltersAndBatches(t *testing.T) {
	s := startServer(t)
	s.tpDeploySinks("bytype", "bysource", "batched")
	s.mustCLI("topic", "create", "t")
	s.mustCLI("subscribe", "t", "--function", "bytype", "--filter", "type=keep")
	s.mustCLI("subscribe", "t", "--function", "bysource", "--filter", "source-prefix=/a/")
	s.mustCLI("subscribe", "t", "--function", "batched", "--batch", "3")
	batch := "[" + strings.Join([]string{
		tpCE("e1", "keep", "/a/x", ""), tpCE("e2", "drop", "/a/y", ""), tpCE("e3", "keep", "/b", ""),
		tpCE("e4", "other", "/b/a/", ""), tpCE("e5", "drop", "/c", ""),
	}, ",") + "]"
	s.tpMustPublish("t", batch, []string{"e1", "e2", "e3", "e4", "e5"}, "Content-Type", ctBatch)
	s.tpWaitIDs("bytype", "e1", "e3")
	s.tpWaitIDs("bysource", "e1", "e2")
	s.tpWaitIDs("batched", "e1", "e2", "e3", "e4", "e5")
	var sizes []int
	for _, d := range s.tpDeliveries("batched") {
		sizes = append(sizes, len(d))
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{2, 3}) {
		t.Errorf("batch sizes %v, want a list of 3 and one of 2 (flushed after the wait)", sizes)
	}
}

// TestTopicURLSubscriber delivers to an HTTP server in the test: structured
// CloudEvents, retried after failures.
func TestTopicURLSubscriber(t *testing.T) {
	type post struct {
		contentType string
		event       tpEvent
	}
	var (
		mu    sync.Mutex
		posts []post
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e tpEvent
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		posts = append(posts, post{r.Header.Get("Content-Type"), e})
		n := 0
		for _, p := range posts {
			if p.event.ID == e.ID {
				n++
			}
		}
		mu.Unlock()
		if e.Type == "flaky" && n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	s := startServer(t)
	s.mustCLI("topic", "create", "hooks")
	s.mustCLI("subscribe", "hooks", "--url", hook.URL+"/events", "--filter", "source-prefix=/app")
	s.tpMustPublish("hooks", tpCE("ok1", "fine", "/app/1", `{"a":1}`), []string{"ok1"}, "Content-Type", ctStructured)
	s.tpMustPublish("hooks", tpCE("fl1", "flaky", "/app/2", ""), []string{"fl1"}, "Content-Type", ctStructured)
	s.tpMustPublish("hooks", tpCE("no1", "fine", "/other", ""), []string{"no1"}, "Content-Type", ctStructured)
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, p := range posts {
			if p.event.ID == id {
				n++
			}
		}
		return n
	}
	eventually.True(t, 20*time.Second, "three attempts of the flaky event", func() bool { return count("fl1") == 3 })
	if n := count("ok1"); n != 1 {
		t.Errorf("event ok1 POSTed %d times, want 1", n)
	}
	if n := count("no1"); n != 0 {
		t.Errorf("an event the filter refuses was POSTed %d times", n)
	}
	mu.Lock()
	for _, p := range posts {
		if !strings.HasPrefix(p.contentType, ctStructured) || p.event.SpecVersion != "1.0" {
			t.Errorf("POST %q %+v, want a structured-mode CloudEvent", p.contentType, p.event)
		}
		if p.event.ID == "ok1" && string(p.event.Data) != `{"a":1}` {
			t.Errorf("event ok1 arrived with data %s", p.event.Data)
		}
	}
	mu.Unlock()
	if out := s.mustCLI("subscriptions", "hooks"); !strings.Contains(out, hook.URL+"/events") || !strings.Contains(out, "source-prefix=/app") {
		t.Errorf("subscriptions printed %q", out)
	}
}

// TestTopicNATSClient publishes with a plain NATS client over TCP, with
// the credentials stratus nats credentials shows.
func TestTopicNATSClient(t *testing.T) {
	s := startServer(t, "--nats-listen", "127.0.0.1:0")
	m := regexp.MustCompile(`NATS clients may connect.*url=(\S+)`).FindStringSubmatch(s.Stderr())
	if m == nil {
		t.Fatalf("the server did not log the NATS URL:\n%s", s.Stderr())
	}
	s.tpDeploySinks("sink")
	s.mustCLI("topic", "create", "feed")
	s.mustCLI("subscribe", "feed", "--function", "sink")
	creds := s.natsCredentials()
	if creds.URL != m[1] {
		t.Errorf("credentials URL %q, the server logged %q", creds.URL, m[1])
	}
	nc, err := nats.Connect(creds.URLWithAuth)
	if err != nil {
		t.Fatalf("connect to %s: %v", m[1], err)
	}
	defer nc.Close()
	for _, msg := range []string{
		tpCE("n1", "nats.event", "/nats", `{"via":"nats"}`),
		`{"specversion":"1.0","id":"bad","type":"x"}`, // no source: dropped
		"not json",
		tpCE("n2", "nats.event", "/nats", ""),
	} {
		if err := nc.Publish("stratus.topic.feed", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s.tpWaitIDs("sink", "n1", "n2")
	if d := s.tpDeliveries("sink"); string(d[0][0].Data) != `{"via":"nats"}` && string(d[1][0].Data) != `{"via":"nats"}` {
		t.Errorf("deliveries %+v", d)
	}
	eventually.True(t, 5*time.Second, "a log line for the invalid messages", func() bool {
		return strings.Count(s.Stderr(), "not a valid CloudEvent") == 2
	})
	if !strings.Contains(s.Stderr(), `attribute \"source\": missing`) {
		t.Errorf("the log does not say why an event was dropped:\n%s", s.Stderr())
	}
}

// TestTopicDestination sends the failure of an async invocation to a
// topic, whose subscriber receives Lambda's destination record as a
// CloudEvent.
func TestTopicDestination(t *testing.T) {
	s := startServer(t)
	s.tpDeploySinks("sink")
	// A topic destination must exist at deploy; nothing is created.
	r := s.cli("deploy", "echo", "--runtime", "provided", "--on-failure", "topic:failures", fixture("goecho"))
	if r.Code == 0 || !strings.Contains(r.Stderr, `topic "failures"`) || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("deploy with a missing topic destination: exit %d stderr %q", r.Code, r.Stderr)
	}
	if resp, _ := s.do("GET", "/v1/functions/echo", nil, true); resp.StatusCode != 404 {
		t.Errorf("a refused deploy created the function (%d)", resp.StatusCode)
	}
	s.mustCLI("topic", "create", "failures")
	s.mustCLI("deploy", "echo", "--runtime", "provided", "--max-retries", "0", "--on-failure", "topic:failures", fixture("goecho"))
	s.mustCLI("subscribe", "failures", "--function", "sink", "--filter", "type=stratus.function.failure")
	// A function may subscribe to its own destination topic.
	s.mustCLI("subscribe", "failures", "--function", "echo", "--filter", "type=never")

	id := strings.TrimSpace(s.mustCLI("invoke", "echo", "--async", "--data", `{"fail":"boom"}`))
	s.tpWaitIDs("sink", id)
	e := s.tpDeliveries("sink")[0][0]
	if e.Type != "stratus.function.failure" || e.Source != "stratus/functions/echo" || e.Subject != "RetriesExhausted" {
		t.Errorf("destination event %+v", e)
	}
	var rec struct {
		RequestContext struct {
			RequestID string `json:"requestId"`
			Condition string `json:"condition"`
		} `json:"requestContext"`
		RequestPayload  map[string]string `json:"requestPayload"`
		ResponsePayload struct {
			ErrorMessage string `json:"errorMessage"`
		} `json:"responsePayload"`
	}
	if err := json.Unmarshal(e.Data, &rec); err != nil {
		t.Fatalf("record %s: %v", e.Data, err)
	}
	if rec.RequestContext.RequestID != id || rec.RequestContext.Condition != "RetriesExhausted" ||
		rec.RequestPayload["fail"] != "boom" || rec.ResponsePayload.ErrorMessage != "boom" {
		t.Errorf("destination record %s", e.Data)
	}
}

// TestTopicBadInput checks that every bad topic request is a clear 4xx
// and changes nothing.
func TestTopicBadInput(t *testing.T) {
	s := startServer(t, "--max-async-event-size", "2048")
	s.tpDeploySinks("sink")
	s.mustCLI("topic", "create", "t")
	subID := strings.TrimSpace(s.mustCLI("subscribe", "t", "--function", "sink"))

	for _, tc := range []struct {
		what, method, path, body string
		hdr                      []string
		status                   int
		msg                      string
	}{
		{"bad topic name", "POST", "/v1/topics", `{"name":"a.b"}`, nil, 400, `name "a.b"`},
		{"empty topic name", "POST", "/v1/topics", `{"name":""}`, nil, 400, "name"},
		{"unknown field", "POST", "/v1/topics", `{"name":"x","color":"red"}`, nil, 400, "color"},
		{"existing topic", "POST", "/v1/topics", `{"name":"t"}`, nil, 409, "already exists"},
		{"unknown topic", "POST", "/v1/topics/nope/events", tpCE("1", "x", "/x", ""), []string{"Content-Type", ctStructured}, 404, `topic "nope"`},
		{"no id", "POST", "/v1/topics/t/events", `{"specversion":"1.0","type":"x","source":"/x"}`, []string{"Content-Type", ctStructured}, 400, `"id": missing`},
		{"no source", "POST", "/v1/topics/t/events", `{"specversion":"1.0","id":"1","type":"x"}`, []string{"Content-Type", ctStructured}, 400, `"source": missing`},
		{"no type", "POST", "/v1/topics/t/events", `{"specversion":"1.0","id":"1","source":"/x"}`, []string{"Content-Type", ctStructured}, 400, `"type": missing`},
		{"no specversion", "POST", "/v1/topics/t/events", `{"id":"1","type":"x","source":"/x"}`, []string{"Content-Type", ctStructured}, 400, `"specversion": missing`},
		{"bad specversion", "POST", "/v1/topics/t/events", `{"specversion":"0.3","id":"1","type":"x","source":"/x"}`, []string{"Content-Type", ctStructured}, 400, `unsupported value "0.3"`},
		{"malformed JSON", "POST", "/v1/topics/t/events", `{"specversion":`, []string{"Content-Type", ctStructured}, 400, "malformed"},
		{"binary without ce-id", "POST", "/v1/topics/t/events", `{}`, []string{"Content-Type", "application/json", "ce-specversion", "1.0", "ce-type", "x", "ce-source", "/x"}, 400, `"id": missing`},
		{"plain JSON body", "POST", "/v1/topics/t/events", `{"a":1}`, []string{"Content-Type", "application/json"}, 400, "no ce-* headers"},
		{"bad event in a batch", "POST", "/v1/topics/t/events", "[" + tpCE("ok", "x", "/x", "") + `,{"specversion":"1.0","id":"2","source":"/x"}]`, []string{"Content-Type", ctBatch}, 400, `batch event 1`},
		{"oversize event", "POST", "/v1/topics/t/events", tpCE("big", "x", "/x", `"`+strings.Repeat("a", 3000)+`"`), []string{"Content-Type", ctStructured}, 413, "exceeds"},
		{"oversize in a batch", "POST", "/v1/topics/t/events", "[" + tpCE("ok", "x", "/x", "") + "," + tpCE("big", "x", "/x", `"`+strings.Repeat("a", 3000)+`"`) + "]", []string{"Content-Type", ctBatch}, 413, "exceeds"},
		{"oversize binary", "POST", "/v1/topics/t/events", strings.Repeat("a", 3000), []string{"Content-Type", "text/plain", "ce-specversion", "1.0", "ce-id", "1", "ce-type", "x", "ce-source", "/x"}, 413, "exceeds"},
		{"bad filter", "POST", "/v1/topics/t/subscriptions", `{"function":"sink","filter":"kind=x"}`, nil, 400, "type=EXACT or source-prefix=PREFIX"},
		{"empty filter value", "POST", "/v1/topics/t/subscriptions", `{"function":"sink","filter":"type="}`, nil, 400, "empty value"},
		{"negative batch", "POST", "/v1/topics/t/subscriptions", `{"function":"sink","batch":-1}`, nil, 400, "batch -1"},
		{"huge batch", "POST", "/v1/topics/t/subscriptions", `{"function":"sink","batch":100000}`, nil, 400, "batch 100000"},
		{"batch for a URL", "POST", "/v1/topics/t/subscriptions", `{"url":"http://127.0.0.1:1/","batch":2}`, nil, 400, "only function subscribers"},
		{"bad URL", "POST", "/v1/topics/t/subscriptions", `{"url":"ftp://x"}`, nil, 400, "http"},
		{"no target", "POST", "/v1/topics/t/subscriptions", `{}`, nil, 400, "function or a URL"},
		{"both targets", "POST", "/v1/topics/t/subscriptions", `{"function":"sink","url":"http://x/"}`, nil, 400, "not both"},
		{"unknown function", "POST", "/v1/topics/t/subscriptions", `{"function":"ghost"}`, nil, 404, `function "ghost"`},
		{"subscribe to unknown topic", "POST", "/v1/topics/nope/subscriptions", `{"function":"sink"}`, nil, 404, `topic "nope"`},
		{"list of unknown topic", "GET", "/v1/topics/nope/subscriptions", "", nil, 404, `topic "nope"`},
		{"remove unknown topic", "DELETE", "/v1/topics/nope", "", nil, 404, `topic "nope"`},
		{"remove unknown subscription", "DELETE", "/v1/subscriptions/sub-nope", "", nil, 404, `subscription "sub-nope"`},
	} {
		resp, body := s.do(tc.method, tc.path, []byte(tc.body), true, tc.hdr...)
		var e struct{ Code, Message string }
		if json.Unmarshal(body, &e) != nil || e.Code == "" || e.Message == "" {
			t.Errorf("%s: %d, error body %s is not {code, message}", tc.what, resp.StatusCode, body)
			continue
		}
		if resp.StatusCode != tc.status || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %d %s, want %d mentioning %q", tc.what, resp.StatusCode, body, tc.status, tc.msg)
		}
	}
	for _, path := range []string{"/v1/topics", "/v1/topics/t/events", "/v1/subscriptions"} {
		if resp, _ := s.do("GET", path, nil, false); resp.StatusCode != 401 {
			t.Errorf("GET %s without the token: %d, want 401", path, resp.StatusCode)
		}
	}
	if resp, _ := s.do("POST", "/v1/topics/t/events", []byte(tpCE("x", "x", "/x", "")), false, "Content-Type", ctStructured); resp.StatusCode != 401 {
		t.Errorf("publish without the token: %d, want 401", resp.StatusCode)
	}

	// CLI mistakes are usage errors.
	for _, args := range [][]string{
		{"subscribe", "t"},
		{"subscribe", "t", "--function", "sink", "--url", "http://x/"},
		{"topic", "publish", "t", "--data", "{not json"},
		{"topic", "publish", "t", "--file", "/no/such/file"},
		{"topic", "create", "a.b"},
	} {
		if r := s.cli(args...); r.Code != 2 || r.Stderr == "" {
			t.Errorf("stratus %v: exit %d stderr %q, want a usage error (2)", args, r.Code, r.Stderr)
		}
	}
	if r := s.cli("subscribe", "t", "--function", "sink", "--filter", "bogus"); r.Code != 1 || !strings.Contains(r.Stderr, "type=EXACT") {
		t.Errorf("subscribe with a bad filter: exit %d stderr %q", r.Code, r.Stderr)
	}

	// Nothing changed: one topic, one subscription, and the sink receives
	// only the event published last.
	s.tpMustPublish("t", tpCE("marker", "x", "/x", ""), []string{"marker"}, "Content-Type", ctStructured)
	s.tpWaitIDs("sink", "marker")
	if out := s.mustCLI("topic", "ls", "-o", "json"); len(decode[[]map[string]any](t, []byte(out))) != 1 {
		t.Errorf("topics after bad input: %s", out)
	}
	subs := decode[[]map[string]any](t, []byte(s.mustCLI("subscriptions", "-o", "json")))
	if len(subs) != 1 || subs[0]["id"] != subID {
		t.Errorf("subscriptions after bad input: %v", subs)
	}
}
