package runtimeapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/runtimeapi"
)

const prefix = "/2018-06-01/runtime"

// harness is one Server and the invocations handed to it.
type harness struct {
	t      *testing.T
	srv    *runtimeapi.Server
	client *http.Client

	mu      sync.Mutex
	results map[string]<-chan runtimeapi.Result // by request ID
	last    string                              // request ID of the last offer
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	ctx     context.Context
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv, err := runtimeapi.New(netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetOwner(anyone)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h := &harness{
		t: t, srv: srv, ctx: ctx, cancel: cancel,
		client:  &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}},
		results: make(map[string]<-chan runtimeapi.Result),
	}
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		h.wg.Wait()
		h.client.CloseIdleConnections()
	})
	return h
}

// offer hands inv to the runtime in the background: Invoke blocks until a
// next call takes it.
func (h *harness) offer(inv *runtimeapi.Invocation) {
	ready := make(chan struct{})
	h.mu.Lock()
	h.last = inv.RequestID
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		close(ready)
		ch, err := h.srv.Invoke(h.ctx, inv)
		if err != nil {
			return // the test sees no result
		}
		h.mu.Lock()
		h.results[inv.RequestID] = ch
		h.mu.Unlock()
	}()
	<-ready
}

// result waits for the result of the invocation id.
func (h *harness) result(id string) runtimeapi.Result {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		ch := h.results[id]
		h.mu.Unlock()
		if ch != nil {
			select {
			case r := <-ch:
				return r
			case <-time.After(time.Until(deadline)):
				h.t.Fatalf("no result for %s", id)
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("invocation %s was never taken", id)
		}
		time.Sleep(time.Millisecond)
	}
}

// noResult fails if the invocation id already has a result. The server
// finishes an invocation before it answers the request that did, so this
// needs no waiting.
func (h *harness) noResult(id string) {
	h.t.Helper()
	h.mu.Lock()
	ch := h.results[id]
	h.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case r := <-ch:
		h.t.Fatalf("invocation %s has a result %+v (body %s), want none yet", id, r, r.Body)
	default:
	}
}

type request struct {
	method, path string
	body         []byte
	header       map[string]string
	trailer      map[string]string // sends the body chunked, then these
}

func (h *harness) do(r request) (*http.Response, []byte) {
	h.t.Helper()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	if r.trailer != nil {
		// An unknown length makes the client send chunks and trailers.
		body = io.MultiReader(bytes.NewReader(r.body))
	}
	req, err := http.NewRequestWithContext(h.ctx, r.method, "http://"+h.srv.Addr()+r.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.trailer != nil {
		req.Trailer = http.Header{}
		for k := range r.trailer {
			req.Trailer.Set(k, "")
		}
		req.Body = &trailerBody{Reader: body, req: req, values: r.trailer}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return resp, b
}

// trailerBody sets the trailer values once the body is read, as
// aws-lambda-go does.
type trailerBody struct {
	io.Reader
	req    *http.Request
	values map[string]string
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		for k, v := range b.values {
			b.req.Trailer.Set(k, v)
		}
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// step is one move of a Runtime API conversation.
type step struct {
	// offer hands an invocation to the runtime; the next "next" takes it.
	offer *runtimeapi.Invocation

	// An HTTP request from the runtime. "{id}" in path stands for the
	// request ID of the last offer.
	req        *request
	wantStatus int
	// wantErrorType is the errorType of an error answer.
	wantErrorType string
	// wantBody is the exact body of the answer.
	wantBody   *string
	wantHeader map[string]string
	noHeader   []string

	// result: the invocation with this request ID has this result.
	result *idResult
	// noResult: the invocation with this request ID has no result yet.
	noResult string
	// initError: InitError delivers this.
	initError *runtimeapi.Result
}

type idResult struct {
	id  string
	res runtimeapi.Result
}

func next() *request { return &request{method: "GET", path: prefix + "/invocation/next"} }
func post(path, body string) *request {
	return &request{method: "POST", path: prefix + path, body: []byte(body)}
}
func postH(path, body string, header map[string]string) *request {
	r := post(path, body)
	r.header = header
	return r
}
func ptr[T any](v T) *T { return &v }
func res(id, body, errType string) *idResult {
	return &idResult{id, runtimeapi.Result{Body: []byte(body), ErrorType: errType}}
}
func lambdaErr(errType, msg string) string {
	b, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": errType})
	return string(b)
}

var deadline = time.UnixMilli(1_900_000_000_123)

func inv(id, event string) *runtimeapi.Invocation {
	return &runtimeapi.Invocation{
		RequestID:   id,
		Event:       []byte(event),
		Deadline:    deadline,
		FunctionARN: "arn:aws:lambda:local:000000000000:function:fn",
		TraceID:     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
	}
}

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

func (h *harness) run(i int, s step) {
	t := h.t
	t.Helper()
	switch {
	case s.offer != nil:
		h.offer(s.offer)
	case s.req != nil:
		r := *s.req
		h.mu.Lock()
		r.path = strings.ReplaceAll(r.path, "{id}", h.last)
		h.mu.Unlock()
		resp, body := h.do(r)
		if resp.StatusCode != s.wantStatus {
			t.Fatalf("step %d: %s %s: status %d (%s), want %d", i, r.method, r.path, resp.StatusCode, trim(body), s.wantStatus)
		}
		if s.wantErrorType != "" {
			var e runtimeapi.ErrorObject
			if err := json.Unmarshal(body, &e); err != nil || e.ErrorType != s.wantErrorType || e.ErrorMessage == "" {
				t.Errorf("step %d: %s %s: body %s, want a Lambda error object of type %s", i, r.method, r.path, trim(body), s.wantErrorType)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("step %d: Content-Type %q, want application/json", i, ct)
			}
		}
		if s.wantBody != nil && string(body) != *s.wantBody {
			t.Errorf("step %d: body %s, want %s", i, trim(body), trim([]byte(*s.wantBody)))
		}
		for k, v := range s.wantHeader {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("step %d: header %s = %q, want %q", i, k, got, v)
			}
		}
		for _, k := range s.noHeader {
			if v, ok := resp.Header[http.CanonicalHeaderKey(k)]; ok {
				t.Errorf("step %d: header %s = %q, want none", i, k, v)
			}
		}
	case s.result != nil:
		got, want := h.result(s.result.id), s.result.res
		if got.ErrorType != want.ErrorType || !bytes.Equal(got.Body, want.Body) {
			t.Errorf("step %d: result of %s: type %q, body %s; want type %q, body %s", i, s.result.id, got.ErrorType, trim(got.Body), want.ErrorType, trim(want.Body))
		}
	case s.noResult != "":
		h.noResult(s.noResult)
	case s.initError != nil:
		select {
		case got := <-h.srv.InitError():
			if diff := cmp.Diff(*s.initError, got); diff != "" {
				t.Errorf("step %d: init error (-want +got):\n%s", i, diff)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("step %d: no init error delivered", i)
		}
	default:
		t.Fatalf("step %d: empty", i)
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%s... (%d bytes)", b[:200], len(b))
	}
	return string(b)
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

// TestAWSLambdaGo runs an unmodified aws-lambda-go binary against the
// server: the library's own Runtime API client must work unchanged.
func TestAWSLambdaGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an aws-lambda-go binary")
	}
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-o", bin, "./testdata/lambdafn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	h := newHarness(t)
	var stderr bytes.Buffer
	fn := exec.Command(bin)
	fn.Env = []string{
		"AWS_LAMBDA_RUNTIME_API=" + h.srv.Addr(),
		"AWS_LAMBDA_FUNCTION_NAME=fn",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
	}
	fn.Stderr = &stderr
	if err := fn.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- fn.Wait() }()
	t.Cleanup(func() {
		_ = fn.Process.Kill()
		<-exited
	})

	invoke := func(i *runtimeapi.Invocation) runtimeapi.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ch, err := h.srv.Invoke(ctx, i)
		if err != nil {
			t.Fatalf("Invoke %s: %v (function stderr: %s)", i.RequestID, err, stderr.String())
		}
		select {
		case r := <-ch:
			return r
		case err := <-exited:
			t.Fatalf("function exited during %s: %v\n%s", i.RequestID, err, stderr.String())
		case <-ctx.Done():
			t.Fatalf("no result for %s", i.RequestID)
		}
		return runtimeapi.Result{}
	}

	t.Run("echo", func(t *testing.T) {
		i := inv("go-1", `{"msg":"hi"}`)
		i.Deadline = time.Now().Add(time.Minute).Truncate(time.Millisecond)
		i.ClientContext = `{"custom":{"k":"v"}}`
		i.CognitoIdentity = `{"cognitoIdentityId":"id-7","cognitoIdentityPoolId":"pool"}`
		r := invoke(i)
		if r.ErrorType != "" {
			t.Fatalf("error %s: %s", r.ErrorType, r.Body)
		}
		var got map[string]any
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		want := map[string]any{
			"requestId":         "go-1",
			"functionArn":       i.FunctionARN,
			"deadlineMs":        float64(i.Deadline.UnixMilli()),
			"traceId":           i.TraceID,
			"clientCustom":      map[string]any{"k": "v"},
			"cognitoIdentityId": "id-7",
			"msg":               "hi",
			"functionName":      "fn",
			"memoryLimitMB":     float64(256),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("what aws-lambda-go saw (-want +got):\n%s", diff)
		}
	})
	t.Run("error", func(t *testing.T) {
		r := invoke(inv("go-2", `{"op":"error","msg":"it failed"}`))
		if r.ErrorType != "errorString" {
			t.Errorf("ErrorType = %q, want errorString (body %s)", r.ErrorType, r.Body)
		}
		var e runtimeapi.ErrorObject
		if err := json.Unmarshal(r.Body, &e); err != nil || e.ErrorMessage != "it failed" {
			t.Errorf("body %s, want errorMessage %q", r.Body, "it failed")
		}
	})
	t.Run("stream", func(t *testing.T) {
		r := invoke(inv("go-3", `{"op":"stream","msg":"raw bytes, not JSON"}`))
		if r.ErrorType != "" || string(r.Body) != "raw bytes, not JSON" {
			t.Errorf("result %q %s, want the streamed bytes", r.ErrorType, r.Body)
		}
	})
	t.Run("broken stream", func(t *testing.T) {
		// aws-lambda-go reports a response that fails midway in the
		// Lambda-Runtime-Function-Error-* trailers; it is an error.
		r := invoke(inv("go-4", `{"op":"broken-stream","msg":"partial"}`))
		if r.ErrorType != "errorString" {
			t.Errorf("ErrorType = %q (body %q), want errorString from the trailers", r.ErrorType, r.Body)
		}
		var e runtimeapi.ErrorObject
		if err := json.Unmarshal(r.Body, &e); err != nil || e.ErrorMessage != "stream broke" {
			t.Errorf("body %s, want errorMessage %q", r.Body, "stream broke")
		}
	})
	t.Run("warm again", func(t *testing.T) {
		if r := invoke(inv("go-5", `{"msg":"again"}`)); r.ErrorType != "" || !bytes.Contains(r.Body, []byte(`"requestId":"go-5"`)) {
			t.Errorf("result %q %s", r.ErrorType, r.Body)
		}
	})
	t.Run("panic", func(t *testing.T) {
		r := invoke(inv("go-6", `{"op":"panic","msg":"boom"}`))
		var e struct {
			ErrorMessage string `json:"errorMessage"`
			StackTrace   []any  `json:"stackTrace"`
		}
		if err := json.Unmarshal(r.Body, &e); err != nil || r.ErrorType == "" || e.ErrorMessage != "boom" || len(e.StackTrace) == 0 {
			t.Errorf("result %q %s, want a panic error with a stack trace", r.ErrorType, r.Body)
		}
		// aws-lambda-go exits after reporting a panic.
		select {
		case err := <-exited:
			exited <- err
		case <-time.After(20 * time.Second):
			t.Error("aws-lambda-go did not exit after a panic")
		}
	})
}

// TestListenAddress: the server listens on the address its instance's
// sandbox reaches the host at, else on the loopback.
func TestListenAddress(t *testing.T) {
	for _, tc := range []struct {
		ip   netip.Addr
		want string
	}{
		{netip.Addr{}, "127.0.0.1"},
		{netip.MustParseAddr("127.0.0.2"), "127.0.0.2"},
	} {
		srv, err := runtimeapi.New(tc.ip)
		if err != nil {
			t.Fatalf("New(%v): %v", tc.ip, err)
		}
		ap, err := netip.ParseAddrPort(srv.Addr())
		if err != nil || ap.Addr().String() != tc.want || ap.Port() == 0 {
			t.Errorf("New(%v).Addr() = %q, want %s:PORT", tc.ip, srv.Addr(), tc.want)
		}
		_ = srv.Close()
	}
}

// anyone is an owner check that lets every connection in.
func anyone(context.Context, netip.AddrPort, netip.AddrPort) bool { return true }

// TestOnlyItsOwner: the server answers only connections its owner check
// accepts (here: those from 127.0.0.4, as a sandbox network would have
// it). A request that comes before the check is known waits for it; a
// connection is checked once, however many requests it carries; a
// refused one gets 403 and is closed.
func TestOnlyItsOwner(t *testing.T) {
	srv, err := runtimeapi.New(netip.MustParseAddr("127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	}
	type answer struct {
		status int
		closed bool // the server closes the connection
		err    error
	}
	get := func(c *http.Client) answer {
		resp, err := c.Get("http://" + srv.Addr() + "/nowhere")
		if err != nil {
			return answer{err: err}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return answer{status: resp.StatusCode, closed: resp.Close}
	}
	early := make(chan answer, 1)
	go func() { early <- get(from("127.0.0.3")) }()
	select {
	case a := <-early:
		t.Fatalf("a request before SetOwner was answered: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}
	var mu sync.Mutex
	var asked []string
	srv.SetOwner(func(ctx context.Context, local, remote netip.AddrPort) bool {
		mu.Lock()
		defer mu.Unlock()
		if local.String() != srv.Addr() {
			t.Errorf("owner check: local end %s, want %s", local, srv.Addr())
		}
		asked = append(asked, remote.Addr().String())
		return remote.Addr() == netip.MustParseAddr("127.0.0.4")
	})
	if a := <-early; a.err != nil || a.status != http.StatusForbidden || !a.closed {
		t.Errorf("the early request of another address: %+v, want 403 and the connection closed", a)
	}
	owner := from("127.0.0.4")
	for range 3 {
		if a := get(owner); a.err != nil || a.status != http.StatusNotFound || a.closed {
			t.Errorf("request of the owner: %+v, want it passed on (404 for an unknown path) on a kept connection", a)
		}
	}
	if a := get(from("127.0.0.5")); a.err != nil || a.status != http.StatusForbidden || !a.closed {
		t.Errorf("request of another address: %+v, want 403 and the connection closed", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"}; !cmp.Equal(asked, want) {
		t.Errorf("owner check asked for %v, want once per connection: %v", asked, want)
	}
}
