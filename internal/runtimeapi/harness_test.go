package runtimeapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus/internal/eventually"
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
	srv, err := runtimeapi.New(runtimeapi.Config{})
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
	var ch <-chan runtimeapi.Result
	eventually.True(h.t, 10*time.Second, "invocation "+id+" to be taken", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		ch = h.results[id]
		return ch != nil
	})
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no result for %s", id)
		return runtimeapi.Result{}
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

func anyone(context.Context, netip.AddrPort, netip.AddrPort) bool { return true }
