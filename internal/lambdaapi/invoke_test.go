package lambdaapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestInvoke(t *testing.T) {
	var logged []string
	ta := newTestAPI(t, func(c *Config) {
		c.MaxPayload = 64
		c.Logs = func(_ context.Context, fn, id string) ([]stratus.LogLine, error) {
			logged = append(logged, fn+" "+id)
			return []stratus.LogLine{
				{Text: "START RequestId: " + id + " Version: $LATEST"},
				{Text: strings.Repeat("x", 5000)},
				{Text: "hello from " + fn},
				{Text: "END RequestId: " + id},
			}, nil
		}
	})
	ta.createPython(t, "f", nil)
	var gotCtx string
	ta.fns.invoke = func(ref stratus.FunctionRef, v *stratus.Version, req stratus.Request) (*stratus.Response, error) {
		gotCtx = req.ClientContext
		if string(req.Event) == `{"fail":true}` {
			return &stratus.Response{Body: []byte(`{"errorType":"Boom","errorMessage":"no"}`), ErrorType: "Boom", Record: stratus.Invocation{Qualifier: v.RunsAs()}}, nil
		}
		return &stratus.Response{Body: []byte(`"ok"`), Record: stratus.Invocation{RequestID: req.RequestID, Qualifier: v.RunsAs()}}, nil
	}

	w := ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{"a":1}`, "X-Amz-Log-Type", "Tail", "X-Amz-Client-Context", "eyJ9")
	if w.Code != 200 || w.Body.String() != `"ok"` || w.Header().Get("X-Amz-Executed-Version") != "$LATEST" || w.Header().Get("X-Amz-Function-Error") != "" {
		t.Fatalf("invoke: %d %q %v", w.Code, w.Body, w.Header())
	}
	if gotCtx != "eyJ9" {
		t.Errorf("ClientContext %q", gotCtx)
	}
	id := w.Header().Get("X-Amzn-RequestId")
	if len(logged) != 1 || logged[0] != "f "+id {
		t.Errorf("logs read for %v, want f %s", logged, id)
	}
	tail, err := base64.StdEncoding.DecodeString(w.Header().Get("X-Amz-Log-Result"))
	if err != nil || len(tail) != 4096 || !strings.HasSuffix(string(tail), "hello from f\nEND RequestId: "+id+"\n") {
		t.Errorf("log result (%d bytes, %v): ...%q", len(tail), err, tail[max(0, len(tail)-60):])
	}

	w = ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{"fail":true}`)
	if w.Code != 200 || w.Header().Get("X-Amz-Function-Error") != "Unhandled" || !strings.Contains(w.Body.String(), "Boom") {
		t.Errorf("function error: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w.Header().Get("X-Amz-Log-Result") != "" {
		t.Error("a log result without LogType Tail")
	}

	w = ta.do(t, "POST", "/2015-03-31/functions/f/invocations", "", "X-Amz-Invocation-Type", "DryRun")
	if w.Code != http.StatusNoContent {
		t.Errorf("DryRun: %d %s", w.Code, w.Body)
	}
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/g/invocations", "", "X-Amz-Invocation-Type", "DryRun"), 404, "ResourceNotFoundException")

	w = ta.do(t, "POST", "/2015-03-31/functions/f:%24LATEST/invocations", `{"b":2}`, "X-Amz-Invocation-Type", "Event")
	if w.Code != http.StatusAccepted || w.Header().Get("X-Amzn-RequestId") != "async-1" || len(ta.queue.events) != 1 || ta.queue.events[0] != `f:$LATEST {"b":2}` {
		t.Errorf("Event: %d %v %v", w.Code, w.Header(), ta.queue.events)
	}
	ta.queue.err = fmt.Errorf("queue full: %w", stratus.ErrCapacity)
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{}`, "X-Amz-Invocation-Type", "Event"), 429, "TooManyRequestsException")

	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{}`, "X-Amz-Invocation-Type", "Later"), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{}`, "X-Amz-Log-Type", "All"), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{"x":"`+strings.Repeat("y", 100)+`"}`), 413, "RequestTooLargeException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{"x":`), 400, "InvalidRequestContentException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f:1/invocations?Qualifier=2", `{}`), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations?Qualifier=7", `{}`), 404, "ResourceNotFoundException")

	// An empty payload is the event {}.
	ta.fns.invoke = nil
	if w := ta.do(t, "POST", "/2015-03-31/functions/f/invocations", ""); w.Body.String() != "{}" {
		t.Errorf("empty payload ran with %q", w.Body)
	}
}

func TestInvokeThrottled(t *testing.T) {
	ta := newTestAPI(t)
	ta.createPython(t, "f", nil)
	ta.fns.invoke = func(stratus.FunctionRef, *stratus.Version, stratus.Request) (*stratus.Response, error) {
		return nil, fmt.Errorf("function %q: no instance: %w", "f", stratus.ErrCapacity)
	}
	body := wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{}`), 429, "TooManyRequestsException")
	if body["Reason"] != "ConcurrentInvocationLimitExceeded" || body["message"] == "" {
		t.Errorf("body %v", body)
	}
	if _, err := ta.fns.Configure(context.Background(), "f", func(c *stratus.FunctionConfig) error { c.Throttled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	body = wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{}`), 429, "TooManyRequestsException")
	if body["Reason"] != "ReservedFunctionConcurrentInvocationLimitExceeded" {
		t.Errorf("body %v", body)
	}
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", `{}`, "X-Amz-Invocation-Type", "Event"), 429, "TooManyRequestsException")
}

func TestInvokeQualified(t *testing.T) {
	ta := newTestAPI(t)
	ta.createPython(t, "f", nil)
	ta.do(t, "POST", "/2015-03-31/functions/f/versions", nil)
	w := ta.do(t, "POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-test-1%3A123456789012%3Afunction%3Af/invocations?Qualifier=1", `{}`)
	if w.Code != 200 || w.Header().Get("X-Amz-Executed-Version") != "1" {
		t.Errorf("invoke f:1: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got := ta.fns.calls[len(ta.fns.calls)-1]; got != "f:1" {
		t.Errorf("invoked %q, want f:1", got)
	}
}
