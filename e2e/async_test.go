package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// asyncStatus is GET /v1/invocations/ID.
type asyncStatus struct {
	RequestID    string `json:"requestId"`
	Function     string `json:"function"`
	State        string `json:"state"`
	Attempt      int    `json:"attempt"`
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

// enqueue sends an async invoke and returns its request ID.
func (s *server) enqueue(name, event string) string {
	s.t.Helper()
	resp, body := s.do("POST", "/v1/functions/"+name+"/invoke", []byte(event), true, "X-Invocation-Type", "Event")
	if resp.StatusCode != 202 {
		s.t.Fatalf("async invoke of %s: status %d: %s", name, resp.StatusCode, body)
	}
	a := decode[struct {
		RequestID string `json:"requestId"`
	}](s.t, body)
	if a.RequestID == "" || resp.Header.Get("X-Amzn-Requestid") != a.RequestID {
		s.t.Fatalf("async invoke answered %s with header %q", body, resp.Header.Get("X-Amzn-Requestid"))
	}
	return a.RequestID
}

// waitState waits until async invocation id reaches state.
func (s *server) waitState(id, state string, timeout time.Duration) asyncStatus {
	s.t.Helper()
	var st asyncStatus
	eventually.True(s.t, timeout, "invocation "+id+" "+state, func() bool {
		resp, body := s.do("GET", "/v1/invocations/"+id, nil, true)
		if resp.StatusCode != 200 {
			return false
		}
		st = decode[asyncStatus](s.t, body)
		return st.State == state
	})
	return st
}

// records returns the invocation records of fn.
func (s *server) records(fn string) []recordView {
	s.t.Helper()
	resp, body := s.do("GET", "/v1/functions/"+fn+"/invocations?limit=10000", nil, true)
	if resp.StatusCode != 200 {
		s.t.Fatalf("records of %s: %d %s", fn, resp.StatusCode, body)
	}
	return decode[struct {
		Invocations []recordView `json:"invocations"`
	}](s.t, body).Invocations
}

// destinationEvents returns the destination records fn received, read
// from goecho's answers: its records' request payloads are not kept, so
// sink prints its event and the test reads the log.
func (s *server) printedEvents(fn string) []string {
	s.t.Helper()
	resp, body := s.do("GET", "/v1/functions/"+fn+"/logs?limit=10000", nil, true)
	if resp.StatusCode != 200 {
		s.t.Fatalf("logs of %s: %d %s", fn, resp.StatusCode, body)
	}
	var out []string
	for _, l := range decode[struct {
		Lines []struct {
			Stream string `json:"stream"`
			Text   string `json:"text"`
		} `json:"lines"`
	}](s.t, body).Lines {
		if l.Stream == "stdout" && strings.HasPrefix(l.Text, "{") {
			out = append(out, l.Text)
		}
	}
	return out
}

// sinkFunction is a Python handler that prints every event it gets.
func sinkFunction(t *testing.T) string {
	needTool(t, "python3")
	return writeFiles(t, map[string]string{"sink.py": "import json\ndef handler(event, context):\n    print(json.dumps(event))\n    return {'ok': True}\n"})
}

func TestAsyncInvoke(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "sink", "--runtime", "python3", "--handler", "sink.handler", sinkFunction(t))
	s.mustCLI("deploy", "echo", "--runtime", "provided", "--on-success", "function:sink", fixture("goecho"))

	id := strings.TrimSpace(s.mustCLI("invoke", "echo", "--async", "--data", `{"echo":{"n":7}}`))
	st := s.waitState(id, "succeeded", 30*time.Second)
	if st.Function != "echo" || st.Attempt != 1 {
		t.Errorf("status %+v, want echo, attempt 1", st)
	}
	// The invocation ran with the request ID the 202 gave.
	found := false
	for _, r := range s.records("echo") {
		found = found || r.RequestID == id && r.Outcome == "success"
	}
	if !found {
		t.Errorf("no success record with request id %s", id)
	}
	out := s.mustCLI("invocation", id)
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, id) {
		t.Errorf("stratus invocation printed %q", out)
	}

	// The on-success destination got Lambda's destination record.
	var rec struct {
		Version        string `json:"version"`
		RequestContext struct {
			RequestID string `json:"requestId"`
			Condition string `json:"condition"`
			Count     int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		RequestPayload  map[string]any `json:"requestPayload"`
		ResponsePayload map[string]any `json:"responsePayload"`
	}
	eventually.True(t, 30*time.Second, "the destination record at sink", func() bool {
		for _, e := range s.printedEvents("sink") {
			if json.Unmarshal([]byte(e), &rec) == nil && rec.RequestContext.RequestID == id {
				return true
			}
		}
		return false
	})
	if rec.Version != "1.0" || rec.RequestContext.Condition != "Success" || rec.RequestContext.Count != 1 {
		t.Errorf("destination record %+v", rec)
	}
	if fmt.Sprint(rec.RequestPayload["echo"]) != "map[n:7]" || rec.ResponsePayload["requestId"] != id {
		t.Errorf("destination payloads: request %v response %v", rec.RequestPayload, rec.ResponsePayload)
	}
}

func TestAsyncRetriesAndFailureDestination(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "sink", "--runtime", "python3", "--handler", "sink.handler", sinkFunction(t))
	s.mustCLI("deploy", "flaky", "--runtime", "provided", "--max-retries", "2", "--on-failure", "function:sink", fixture("goecho"))
	id := s.enqueue("flaky", `{"fail":"always"}`)
	st := s.waitState(id, "failed", 60*time.Second)
	if st.Attempt != 3 || st.ErrorMessage != "always" {
		t.Errorf("final status %+v, want 3 attempts and the function's error", st)
	}
	n := 0
	for _, r := range s.records("flaky") {
		if r.RequestID == id {
			n++
			if r.Outcome != "error" {
				t.Errorf("attempt outcome %q, want error", r.Outcome)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d attempts recorded with request id %s, want 3 (1 + 2 retries)", n, id)
	}
	eventually.True(t, 30*time.Second, "the failure record at sink", func() bool {
		for _, e := range s.printedEvents("sink") {
			if strings.Contains(e, id) && strings.Contains(e, `"condition": "RetriesExhausted"`) && strings.Contains(e, `"approximateInvokeCount": 3`) {
				return true
			}
		}
		return false
	})

	// max-retries 0: one attempt only.
	s.mustCLI("deploy", "once", "--runtime", "provided", "--max-retries", "0", fixture("goecho"))
	id = s.enqueue("once", `{"fail":"x"}`)
	if st := s.waitState(id, "failed", 30*time.Second); st.Attempt != 1 {
		t.Errorf("max-retries 0 made %d attempts", st.Attempt)
	}
}

func TestAsyncRespectsConcurrency(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "slow", "--runtime", "provided", "--max-concurrency", "2", fixture("goecho"))
	var ids []string
	for range 12 {
		ids = append(ids, s.enqueue("slow", `{"sleep":250}`))
	}
	sawQueue := false
	maxLive := 0
	eventually.True(t, 60*time.Second, "all 12 events done", func() bool {
		f := s.getFn("slow")
		maxLive = max(maxLive, f.Instances.Live)
		resp, body := s.do("GET", "/v1/functions/slow", nil, true)
		if resp.StatusCode == 200 && strings.Contains(string(body), `"depth":`) && !strings.Contains(string(body), `"depth":0`) {
			sawQueue = true
		}
		done := 0
		for _, id := range ids {
			resp, body := s.do("GET", "/v1/invocations/"+id, nil, true)
			if resp.StatusCode == 200 && decode[asyncStatus](t, body).State == "succeeded" {
				done++
			}
		}
		return done == len(ids)
	})
	if maxLive > 2 {
		t.Errorf("%d instances live, max concurrency is 2", maxLive)
	}
	if !sawQueue {
		t.Errorf("the function's queue depth never showed waiting events")
	}
}

// TestAsyncSurvivesKill queues hundreds of events, kills the server with
// SIGKILL while they are processed, restarts it, and checks that every
// accepted event was invoked at least once.
func TestAsyncSurvivesKill(t *testing.T) {
	const n = 300
	s := startServer(t)
	s.mustCLI("deploy", "work", "--runtime", "provided", "--max-concurrency", "4", fixture("goecho"))
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ids[i] = s.enqueue("work", `{"sleep":5,"echo":`+strconv.Itoa(i)+`}`)
		}()
	}
	wg.Wait()
	// Kill once some, not all, are done.
	eventually.True(t, 60*time.Second, "some events done", func() bool { return len(s.records("work")) >= 20 })
	s.Kill()
	s.Restart()
	eventually.True(t, 120*time.Second, "every accepted event invoked", func() bool {
		seen := map[string]bool{}
		for _, r := range s.records("work") {
			if r.Outcome == "success" {
				seen[r.RequestID] = true
			}
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	})
}

func TestAsyncBadInput(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
	big := `{"echo":"` + strings.Repeat("x", 300<<10) + `"}`
	for _, tc := range []struct {
		name, fn, body, typ string
		status              int
	}{
		{"oversize event", "echo", big, "Event", 413},
		{"unknown function", "nope", `{}`, "Event", 404},
		{"not JSON", "echo", `{`, "Event", 400},
		{"unknown invocation type", "echo", `{}`, "Sometimes", 400},
	} {
		resp, body := s.do("POST", "/v1/functions/"+tc.fn+"/invoke", []byte(tc.body), true, "X-Invocation-Type", tc.typ)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), `"code"`) {
			t.Errorf("%s: status %d %s, want %d with a JSON error", tc.name, resp.StatusCode, body, tc.status)
		}
	}
	for _, args := range [][]string{
		{"--max-retries", "3"},
		{"--max-retries", "-1"},
		{"--max-event-age", "30s"},
		{"--max-event-age", "7h"},
		{"--on-failure", "queue:x"},
		{"--on-success", "function:bad name"},
		{"--on-failure", "function:loop"},
	} {
		r := s.cli(append([]string{"deploy", "loop", "--runtime", "provided", fixture("goecho")}, args...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "InvalidParameterValueException") {
			t.Errorf("deploy %v: exit %d, stderr %q", args, r.Code, r.Stderr)
		}
	}
	if out := s.mustCLI("ls", "-o", "json"); strings.Contains(out, `"loop"`) {
		t.Errorf("a refused deploy created the function: %s", out)
	}
	// A loop through another function is refused too.
	s.mustCLI("deploy", "a", "--runtime", "provided", "--on-failure", "function:b", fixture("goecho"))
	r := s.cli("deploy", "b", "--runtime", "provided", "--on-failure", "function:a", fixture("goecho"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "destination loop") {
		t.Errorf("loop a -> b -> a: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestExternalNATS runs Stratus against a separately started nats-server
// process with --nats-url.
func TestExternalNATS(t *testing.T) {
	natsBin := buildNATSServer(t)
	port := freePort(t)
	cmd := exec.Command(natsBin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	s := startServer(t, "--nats-url", "nats://127.0.0.1:"+strconv.Itoa(port))
	s.mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
	id := s.enqueue("echo", `{"echo":1}`)
	s.waitState(id, "succeeded", 30*time.Second)
	if _, err := os.Stat(filepath.Join(s.Data, "nats")); err == nil {
		t.Errorf("an embedded JetStream store was created although --nats-url was given")
	}
}

var natsOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// buildNATSServer installs the nats-server command from the Go module
// proxy once per test run.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	natsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nats-server-bin-")
		if err != nil {
			natsOnce.err = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/nats-io/nats-server/v2@v2.15.2")
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
		natsOnce.out, natsOnce.err = cmd.CombinedOutput()
		natsOnce.path = filepath.Join(dir, "nats-server")
	})
	if natsOnce.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("build nats-server: %v\n%s", natsOnce.err, natsOnce.out)
		}
		t.Skipf("build nats-server: %v", natsOnce.err)
	}
	return natsOnce.path
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
