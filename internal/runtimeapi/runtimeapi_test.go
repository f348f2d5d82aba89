package runtimeapi_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/runtimeapi"
)

func TestStateMachine(t *testing.T) {
	full := inv("req-full", `{"hello":"world"}`)
	full.ClientContext = `{"custom":{"k":"v"}}`
	full.CognitoIdentity = `{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}`
	big := strings.Repeat("x", runtimeapi.MaxResponseBytes)
	tooLarge := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", runtimeapi.MaxResponseBytes)

	tests := []struct {
		name  string
		steps []step
	}{
		{"next returns the event with every header", []step{
			{offer: full},
			{req: next(), wantStatus: 200, wantBody: ptr(`{"hello":"world"}`), wantHeader: map[string]string{
				"Lambda-Runtime-Aws-Request-Id":       "req-full",
				"Lambda-Runtime-Deadline-Ms":          "1900000000123",
				"Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:local:000000000000:function:fn",
				"Lambda-Runtime-Trace-Id":             full.TraceID,
				"Lambda-Runtime-Client-Context":       full.ClientContext,
				"Lambda-Runtime-Cognito-Identity":     full.CognitoIdentity,
				"Content-Type":                        "application/json",
			}},
		}},
		{"next leaves out the client context and identity when unset", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200, wantBody: ptr(`{}`),
				wantHeader: map[string]string{"Lambda-Runtime-Aws-Request-Id": "r1"},
				noHeader:   []string{"Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity"}},
		}},
		{"response completes the invocation", []step{
			{offer: inv("r1", `{"n":1}`)},
			{req: next(), wantStatus: 200},
			{noResult: "r1"},
			{req: post("/invocation/r1/response", `{"ok":true}`), wantStatus: 202, wantBody: ptr(`{"status":"OK"}`)},
			{result: res("r1", `{"ok":true}`, "")},
		}},
		{"empty response", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/response", ``), wantStatus: 202},
			{result: res("r1", ``, "")},
		}},
		{"invocations one after another", []step{
			{offer: inv("r1", `1`)},
			{req: next(), wantStatus: 200, wantBody: ptr(`1`)},
			{req: post("/invocation/r1/response", `"one"`), wantStatus: 202},
			{result: res("r1", `"one"`, "")},
			{offer: inv("r2", `2`)},
			{req: next(), wantStatus: 200, wantBody: ptr(`2`)},
			{req: post("/invocation/r2/response", `"two"`), wantStatus: 202},
			{result: res("r2", `"two"`, "")},
		}},
		{"error with Lambda's error object", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/error", `{"errorMessage":"bad","errorType":"MyError","stackTrace":["a.go:1"]}`), wantStatus: 202},
			{result: res("r1", `{"errorMessage":"bad","errorType":"MyError","stackTrace":["a.go:1"]}`, "MyError")},
		}},
		{"error type from the header when the object has none", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: postH("/invocation/r1/error", `{"errorMessage":"bad"}`, map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"}), wantStatus: 202},
			{result: res("r1", `{"errorMessage":"bad"}`, "Runtime.Custom")},
		}},
		{"error object without a type is Unhandled", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/error", `{"errorMessage":"bad"}`), wantStatus: 202},
			{result: res("r1", `{"errorMessage":"bad"}`, "Unhandled")},
		}},
		{"error body that is not JSON is wrapped", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/error", "something broke\n"), wantStatus: 202},
			{result: res("r1", lambdaErr("Unhandled", "something broke"), "Unhandled")},
		}},
		{"error body that is not JSON takes the header's type", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: postH("/invocation/r1/error", "oops", map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.Crash"}), wantStatus: 202},
			{result: res("r1", lambdaErr("Runtime.Crash", "oops"), "Runtime.Crash")},
		}},
		{"JSON error body that is not an error object is wrapped", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/error", `[1,2]`), wantStatus: 202},
			{result: res("r1", lambdaErr("Unhandled", "[1,2]"), "Unhandled")},
		}},
		{"empty error body is wrapped", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/error", ``), wantStatus: 202},
			{result: res("r1", lambdaErr("Unhandled", ""), "Unhandled")},
		}},
		{"response for a wrong ID", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r0/response", `"wrong"`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{noResult: "r1"},
			{req: post("/invocation/r1/response", `"right"`), wantStatus: 202},
			{result: res("r1", `"right"`, "")},
		}},
		{"error for a wrong ID", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r0/error", `{"errorMessage":"x","errorType":"X"}`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{noResult: "r1"},
			{req: post("/invocation/r1/error", `{"errorMessage":"x","errorType":"X"}`), wantStatus: 202},
			{result: res("r1", `{"errorMessage":"x","errorType":"X"}`, "X")},
		}},
		{"response before any next", []step{
			{req: post("/invocation/r1/response", `{}`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{req: post("/invocation/r1/error", `{}`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
		}},
		{"response offered but not yet taken", []step{
			{offer: inv("r1", `{}`)},
			{req: post("/invocation/r1/response", `{}`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/response", `"ok"`), wantStatus: 202},
			{result: res("r1", `"ok"`, "")},
		}},
		{"second answer to one invocation", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/response", `"first"`), wantStatus: 202},
			{req: post("/invocation/r1/response", `"second"`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{req: post("/invocation/r1/error", `"third"`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{result: res("r1", `"first"`, "")},
		}},
		{"next without answering fails the invocation in flight", []step{
			{offer: inv("r1", `1`)},
			{req: next(), wantStatus: 200},
			{offer: inv("r2", `2`)},
			{req: next(), wantStatus: 200, wantBody: ptr(`2`)},
			{result: res("r1", lambdaErr("Runtime.NoResponse", "the runtime asked for the next invocation without answering this one"), "Runtime.NoResponse")},
			{req: post("/invocation/r1/response", `"late"`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{req: post("/invocation/r2/response", `"two"`), wantStatus: 202},
			{result: res("r2", `"two"`, "")},
		}},
		{"init/error before the first next", []step{
			{req: post("/init/error", `{"errorMessage":"cannot load module","errorType":"Runtime.ImportModuleError"}`), wantStatus: 202},
			{initError: &runtimeapi.Result{Body: []byte(`{"errorMessage":"cannot load module","errorType":"Runtime.ImportModuleError"}`), ErrorType: "Runtime.ImportModuleError"}},
		}},
		{"init/error that is not JSON", []step{
			{req: postH("/init/error", "config missing", map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.BadConfig"}), wantStatus: 202},
			{initError: &runtimeapi.Result{Body: []byte(lambdaErr("Runtime.BadConfig", "config missing")), ErrorType: "Runtime.BadConfig"}},
		}},
		{"init/error after the first next", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/init/error", `{"errorMessage":"late","errorType":"Late"}`), wantStatus: 403, wantErrorType: "InvalidStateTransition"},
			{noResult: "r1"},
			{req: post("/invocation/r1/response", `"ok"`), wantStatus: 202},
			{result: res("r1", `"ok"`, "")},
		}},
		{"response of exactly the maximum size", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/response", big), wantStatus: 202},
			{result: res("r1", big, "")},
		}},
		{"oversize response", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/response", big+"x"), wantStatus: 413, wantErrorType: "RequestEntityTooLarge"},
			{result: res("r1", lambdaErr("Function.ResponseSizeTooLarge", tooLarge), "Function.ResponseSizeTooLarge")},
			// The invocation is over: its ID is no longer valid.
			{req: post("/invocation/r1/response", `"again"`), wantStatus: 400, wantErrorType: "InvalidRequestID"},
		}},
		{"oversize response for a wrong ID", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r0/response", big+"x"), wantStatus: 400, wantErrorType: "InvalidRequestID"},
			{noResult: "r1"},
			{req: post("/invocation/r1/response", `"ok"`), wantStatus: 202},
			{result: res("r1", `"ok"`, "")},
		}},
		{"error reported in trailers after a streamed response", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: &request{method: "POST", path: prefix + "/invocation/r1/response", body: []byte(`partial`),
				trailer: map[string]string{
					"Lambda-Runtime-Function-Error-Type": "StreamError",
					"Lambda-Runtime-Function-Error-Body": base64.StdEncoding.EncodeToString([]byte(`{"errorMessage":"stream broke","errorType":"StreamError"}`)),
				}}, wantStatus: 202},
			{result: res("r1", `{"errorMessage":"stream broke","errorType":"StreamError"}`, "StreamError")},
		}},
		{"empty trailers after a streamed response", []step{
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: &request{method: "POST", path: prefix + "/invocation/r1/response", body: []byte(`"streamed"`),
				trailer: map[string]string{"Lambda-Runtime-Function-Error-Type": "", "Lambda-Runtime-Function-Error-Body": ""}}, wantStatus: 202},
			{result: res("r1", `"streamed"`, "")},
		}},
		{"unknown paths and methods", []step{
			{req: &request{method: "GET", path: prefix + "/invocation/nope"}, wantStatus: 404, wantErrorType: "InvalidRequest"},
			{req: &request{method: "GET", path: "/"}, wantStatus: 404, wantErrorType: "InvalidRequest"},
			{req: &request{method: "GET", path: "/2019-01-01/runtime/invocation/next"}, wantStatus: 404, wantErrorType: "InvalidRequest"},
			{req: &request{method: "GET", path: prefix + "/invocation/r1/response"}, wantStatus: 404, wantErrorType: "InvalidRequest"},
			{req: post("/invocation/next", ``), wantStatus: 404, wantErrorType: "InvalidRequest"},
			{req: &request{method: "GET", path: prefix + "/init/error"}, wantStatus: 404, wantErrorType: "InvalidRequest"},
			// None of this touched the state machine.
			{offer: inv("r1", `{}`)},
			{req: next(), wantStatus: 200},
			{req: post("/invocation/r1/response", `"ok"`), wantStatus: 202},
			{result: res("r1", `"ok"`, "")},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for i, s := range tc.steps {
				h.run(i, s)
			}
		})
	}
}

// TestReady checks that Ready closes at the runtime's first next call, not
// before.
func TestReady(t *testing.T) {
	h := newHarness(t)
	select {
	case <-h.srv.Ready():
		t.Fatal("Ready before any next call")
	default:
	}
	h.offer(inv("r1", `{}`))
	h.do(*next())
	select {
	case <-h.srv.Ready():
	default:
		t.Fatal("Ready not closed after a next call")
	}
}

// TestCloseEndsWaitingNext checks that Close answers a next call that is
// waiting for work, and that nothing can be invoked afterwards.
func TestCloseEndsWaitingNext(t *testing.T) {
	h := newHarness(t)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+h.srv.Addr()+prefix+"/invocation/next", nil)
		resp, err := h.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				err = fmt.Errorf("next answered 200 after Close")
			}
		}
		done <- err
	}()
	<-h.srv.Ready() // the next call is in
	if err := h.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil && strings.Contains(err.Error(), "200") {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting next call still waits after Close")
	}
	_, err := h.srv.Invoke(context.Background(), inv("r1", `{}`))
	if !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("Invoke after Close: err = %v, want ErrUnavailable", err)
	}
	if err := h.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestInvokeContext checks that Invoke gives up when its context ends
// while no runtime asks for work, and that the server still works after.
func TestInvokeContext(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.srv.Invoke(ctx, inv("gone", `{}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Invoke: err = %v, want DeadlineExceeded", err)
	}
	h.offer(inv("r1", `"x"`))
	if _, body := h.do(*next()); string(body) != `"x"` {
		t.Fatalf("next after an abandoned Invoke: body %s, want the new event", body)
	}
}
